//! The OpenAPI document cannot drift from the code: the committed `docs/openapi.json` is the
//! generated one, every `$ref` resolves, every described operation is served, and every route
//! the API modules register is described.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use common::*;

const REGENERATE: &str = "cargo run -p server --bin pe -- openapi > docs/openapi.json";

fn generated() -> Value {
    serde_json::from_str(&server::http::openapi::document()).expect("the document is JSON")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == server::http::openapi::document(),
        "docs/openapi.json is not the document the code generates (server/src/http/openapi.rs \
         and the API types in shared). Regenerate it from the repository's root:\n\n    \
         {REGENERATE}\n"
    );
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let h = harness(1, 4, 0, None);
    let response =
        send(&h, Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await, generated());
}

/// Every `"$ref"` value in a JSON document.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = generated();
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(found.contains("#/components/schemas/RunJsonRequest"), "{found:?}");
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} points at nothing");
    }
}

#[tokio::test]
async fn every_described_operation_is_served() {
    let h = harness(1, 4, 0, None);
    let doc = generated();
    let mut count = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let uri = path.replace("{id}", "x");
            let request = Request::builder().method(method.clone()).uri(&uri);
            let response = send(&h, request.body(Body::empty()).unwrap()).await;
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no API route"),
                "{method} {path} is described but not served: {status} {body}"
            );
            count += 1;
        }
    }
    assert!(count >= 10, "{count} operations");
}

/// The paths the API modules register (`.route("...", ...)` in `server/src/http/`). The HTML
/// site (`pages.rs`, `site.rs`) is not part of the API.
fn registered_routes() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name == "pages.rs" || name == "site.rs" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for part in source.split(".route(").skip(1) {
            let literal = part.trim_start().strip_prefix('"').and_then(|s| s.split_once('"'));
            if let Some((route, _)) = literal {
                routes.insert(route.to_owned());
            }
        }
    }
    routes
}

#[test]
fn every_registered_api_route_is_described() {
    let doc = generated();
    let described: BTreeSet<&str> =
        doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let registered = registered_routes();
    assert!(registered.contains("/api/v1/run"), "{registered:?}");
    let missing: Vec<&String> = registered
        .iter()
        .filter(|route| route.as_str() != "/api/{*rest}" && !described.contains(route.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "served but not in the OpenAPI document: {missing:?}. Describe each in \
         server/src/http/openapi.rs (a #[utoipa::path] item and its name in paths(...)), then:\n\n    \
         {REGENERATE}\n"
    );
}
