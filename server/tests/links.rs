//! Permalinks: `POST /api/v1/links` and `GET /api/v1/links/{id}`.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use common::*;

#[tokio::test]
async fn links_are_content_addressed_and_restore_the_state() {
    let h = harness(1, 4, 0, None);
    let state = json!({"container": "gcc", "options": {"optimization": "-O2"}, "args": [],
                       "env": {}, "files": [{"path": "main.c", "content": "int main(){}"}], "stdin": "x"});
    let post = |body: Value| {
        Request::post("/api/v1/links")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first = send(&h, post(state.clone())).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body_json(first).await;
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["url"], format!("/l/{id}"));
    let again = body_json(send(&h, post(state.clone())).await).await;
    assert_eq!(again["id"], id, "the same state gets the same link");
    let mut changed = state.clone();
    changed["stdin"] = json!("y");
    assert_ne!(body_json(send(&h, post(changed)).await).await["id"], id);

    let fetched = body_json(
        send(&h, Request::get(format!("/api/v1/links/{id}")).body(Body::empty()).unwrap()).await,
    )
    .await;
    assert_eq!(fetched, state);
    let missing =
        send(&h, Request::get("/api/v1/links/AAAAAAAAAAAAAAAA").body(Body::empty()).unwrap()).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found", "no link").await;
    let unknown = send(&h, post(json!({"container": "nope"}))).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found", "nope").await;
    let mut stray = state.clone();
    stray["stdin_file"] = json!("other.c");
    let stray = send(&h, post(stray)).await;
    assert_error(stray, StatusCode::BAD_REQUEST, "bad_request", "not one of the files").await;
    let big = send(&h, post(json!({"container": "gcc", "stdin": "x".repeat(2 << 20)}))).await;
    assert_error(big, StatusCode::PAYLOAD_TOO_LARGE, "too_large", "larger than").await;
    // The app route for a link serves the page.
    let page = send(&h, Request::get(format!("/l/{id}")).body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::OK);
}
