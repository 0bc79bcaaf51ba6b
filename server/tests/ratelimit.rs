//! Per-client rate limits on the costly routes: 429 with its headers, and one bucket per client
//! behind a trusted proxy.

mod common;

use axum::http::{StatusCode, header};

use common::*;

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_the_headers() {
    let h = harness(1, 4, 2, None);
    for _ in 0..2 {
        let ok = send(&h, json_run(hello())).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().contains_key("ratelimit-remaining"));
    }
    let refused = send(&h, json_run(hello())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert!(refused.headers().contains_key("ratelimit-limit"));
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    // The harness's peer is 127.0.0.1, configured as a trusted proxy.
    let h = harness(1, 4, 2, None);
    let from = |client: &str| {
        let mut req = json_run(hello());
        req.headers_mut().insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    for _ in 0..2 {
        assert_eq!(send(&h, from("198.51.100.7")).await.status(), StatusCode::OK);
    }
    assert_eq!(send(&h, from("198.51.100.7")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // A forged first entry does not give the same client a fresh bucket: the proxy appended the
    // real address last.
    let forged = from("203.0.113.1, 198.51.100.7");
    assert_eq!(send(&h, forged).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is not limited by the first.
    assert_eq!(send(&h, from("198.51.100.8")).await.status(), StatusCode::OK);
}
