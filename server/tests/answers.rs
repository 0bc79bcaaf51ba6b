//! Answer formats of the archive form: cpio by default, squashfs on request (`Accept:
//! application/vnd.squashfs` or `?archive=squashfs`), fresh and from the cache.

mod common;

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use shared::api::v1::{RunRequest, RunResult};
use shared::cpio::Entry;
use shared::framing;
use shared::squashfs::{Image, NodeKind, ReadLimits};

use common::*;

fn archive_run(uri: &str, accept: Option<&str>, files: &[Entry]) -> Request<Body> {
    let request = RunRequest { container: "busybox".into(), ..RunRequest::default() };
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/x-pe-archive");
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    req.body(Body::from(archive_request(&request, files))).unwrap()
}

/// The result and every file of a squashfs answer, by path.
async fn squashfs_answer(
    response: axum::http::Response<Body>,
) -> (RunResult, Vec<(String, Vec<u8>)>) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-pe-archive; archive=squashfs"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let (result, image): (RunResult, _) = framing::decode(&bytes, 1 << 20).unwrap();
    let image = Image::open(image, ReadLimits::ANSWER).unwrap();
    let files = image
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| matches!(n.kind, NodeKind::File { .. }))
        .map(|n| {
            let content = image.read(&n).unwrap();
            (n.path, content)
        })
        .collect();
    (result, files)
}

#[tokio::test]
async fn the_archive_form_answers_squashfs_on_request_fresh_and_cached() {
    let h = harness(1, 4, 0, None);
    let files = [Entry::file("main.sh", "echo tree")];
    let (result, got) = squashfs_answer(
        send(&h, archive_run("/api/v1/run", Some("application/vnd.squashfs"), &files)).await,
    )
    .await;
    assert!(!result.cached);
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["output/out.txt", "stderr", "stdout"]);
    assert_eq!(got[0].1, b"made by the fake");
    assert!(String::from_utf8_lossy(&got[2].1).contains("main.sh=echo tree"));
    // The same run again, asked by query parameter: from the cache, as squashfs.
    let (again, same) =
        squashfs_answer(send(&h, archive_run("/api/v1/run?archive=squashfs", None, &files)).await)
            .await;
    assert!(again.cached);
    assert_eq!(same, got);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1);
    // And as cpio, the default.
    let cpio = send(&h, archive_run("/api/v1/run", None, &files)).await;
    assert_eq!(cpio.headers()[header::CONTENT_TYPE], "application/x-pe-archive");
    // Anything else is refused.
    assert_error(
        send(&h, archive_run("/api/v1/run?archive=zip", None, &files)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "archive=squashfs",
    )
    .await;
}
