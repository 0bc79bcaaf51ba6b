//! The Compiler Explorer API through the fake backend (which answers with the argv and files it
//! got on stdout and its stdin on stderr), modelled on Compiler Explorer's own handler tests:
//! argument splitting, filters set/added/removed, unknown ids, text or JSON by `Accept`, short
//! links and client states good and bad.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use common::*;

/// The harness with "built" gcc and python images (the fake never opens them).
fn with_images() -> Harness {
    let h = harness(1, 8, 0, None);
    for id in ["gcc", "python"] {
        common::mark_built(&h.state.images, id, "sha256:abc");
    }
    h
}

async fn text_of(response: axum::http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(uri: &str, json: bool) -> Request<Body> {
    let mut req = Request::get(uri);
    if json {
        req = req.header(header::ACCEPT, "application/json");
    }
    req.body(Body::empty()).unwrap()
}

fn post_json(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn languages_and_compilers_as_json_or_text() {
    let h = with_images();
    let langs = body_json(send(&h, get("/api/languages", true)).await).await;
    let ids: Vec<&str> =
        langs.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    for id in ["c", "c++", "python", "javascript", "lua"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let text = text_of(send(&h, get("/api/languages", false)).await).await;
    assert!(text.starts_with("Id         | Name\n"), "{text}");
    assert!(text.contains("\nc++        | C++"), "{text}");

    let c = body_json(send(&h, get("/api/compilers/c", true)).await).await;
    assert_eq!(c.as_array().unwrap().len(), 1);
    let gcc = &c[0];
    assert_eq!(gcc["id"], "gcc");
    assert_eq!(gcc["lang"], "c");
    assert!(gcc.get("description").is_none(), "not a default field: {gcc}");
    let picked = body_json(send(&h, get("/api/compilers?fields=id,lang", true)).await).await;
    assert!(
        picked.as_array().unwrap().iter().all(|c| c.as_object().unwrap().len() == 2),
        "{picked}"
    );
    let all = body_json(send(&h, get("/api/compilers/python?fields=all", true)).await).await;
    assert_eq!(all[0]["interpreted"], true);
    assert!(all[0]["description"].is_string());
    let table = text_of(send(&h, get("/api/compilers", false)).await).await;
    assert!(table.starts_with("Compiler Name | Name\n"), "{table}");
    assert!(table.contains("\ngcc           | GCC (C) 12.2"), "{table}");
    assert_eq!(body_json(send(&h, get("/api/compilers/cobol", true)).await).await, json!([]));
    let openapi = body_json(send(&h, get("/api/v1/openapi.json", true)).await).await;
    assert!(openapi["paths"]["/api/compiler/{id}/compile"]["post"].is_object());
}

#[tokio::test]
async fn unknown_compilers_are_404_and_requests_without_source_or_options_400() {
    let h = with_images();
    let response = send(&h, post_json("/api/compiler/NOT_A_COMPILER/compile", json!({}))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_error(
        send(&h, post_json("/api/compiler/gcc/compile", json!({"options": {}}))).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Missing source property",
    )
    .await;
    assert_error(
        send(&h, post_json("/api/compiler/gcc/compile", json!({"source": "x"}))).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Missing options property",
    )
    .await;
    assert_eq!(h.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_text_request_splits_options_and_answers_text() {
    let h = with_images();
    let query = "options=-O1%20-monkey%20%22badger%20badger%22&filters=a,b,c&removeFilters=b,c,d";
    let req = Request::post(format!("/api/compiler/gcc/compile?{query}"))
        .body(Body::from("int main(void) { return 0; }"))
        .unwrap();
    let text = text_of(send(&h, req).await).await;
    // Three arguments, the last with its space; no `execute` filter left, so one run.
    assert!(text.contains(r#""-O1", "-monkey", "badger badger""#), "{text}");
    assert!(text.contains("main.c=int main(void) { return 0; }"), "{text}");
    assert!(text.starts_with("<No assembly generated>\nStandard out:\n"), "{text}");
    assert!(!text.contains("# Execution result"), "{text}");
    assert_eq!(h.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_json_request_compiles_then_executes_with_arguments_and_stdin() {
    let h = with_images();
    let body = json!({
        "source": "int main(void) { return 0; }",
        "options": {
            "userArguments": "-O2",
            "filters": {"execute": true},
            "executeParameters": {"args": ["one", "two words"], "stdin": "typed"}
        },
        "files": [{"filename": "util.h", "contents": "int f(void);"}]
    });
    let r = body_json(send(&h, post_json("/api/compiler/gcc/compile", body)).await).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["inputFilename"], "main.c");
    let out: Vec<&str> =
        r["stdout"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(out.iter().any(|l| l.starts_with("argv=") && l.contains("-O2")), "{out:?}");
    assert!(out.contains(&"util.h=int f(void);"), "{out:?}");
    let exec = &r["execResult"];
    assert_eq!(exec["didExecute"], true);
    assert_eq!(exec["code"], 0);
    assert_eq!(exec["buildResult"]["code"], 0);
    let exec_out: Vec<&str> =
        exec["stdout"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    // The program's arguments travel one per line in .program-args (gcc.toml reads them).
    assert!(exec_out.contains(&".program-args=one"), "{exec_out:?}");
    assert!(exec_out.contains(&"two words"), "{exec_out:?}");
    assert_eq!(exec["stderr"][0]["text"], "typed");
    assert_eq!(h.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

    // An interpreter: one run, the execution, its arguments after the script.
    let body = json!({"source": "print(1)", "options": {"filters": {"execute": true},
                      "executeParameters": {"args": "-v 'x y'"}}});
    let r = body_json(send(&h, post_json("/api/compiler/python/compile", body)).await).await;
    let line = r["execResult"]["stdout"][0]["text"].as_str().unwrap();
    assert!(line.ends_with(r#""main.py", "-v", "x y"]"#), "{line}");
}

#[tokio::test]
async fn without_the_execute_filter_nothing_runs_the_program() {
    let h = with_images();
    let body = json!({"source": "int main", "options": {"filters": {"execute": false},
                      "executeParameters": {"stdin": "ignored"}}});
    let r = body_json(send(&h, post_json("/api/compiler/gcc/compile", body)).await).await;
    assert_eq!(r["code"], 0);
    assert!(r.get("execResult").is_none(), "{r}");
    assert!(r["stderr"].as_array().unwrap().is_empty(), "the compile run gets no stdin: {r}");
    assert_eq!(h.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn short_links_and_client_states() {
    let h = with_images();
    let state = json!({"sessions": [{"id": 1, "language": "c", "source": "int main(void) { return 7; }",
        "compilers": [{"id": "gcc", "options": "-O1 -Wall"}],
        "executors": [{"arguments": "a b", "stdin": "in", "compiler": {"id": "gcc", "options": ""}}]}]});
    let created = body_json(send(&h, post_json("/api/shortener", state.clone())).await).await;
    let url = created["url"].as_str().unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert!(url.ends_with(&format!("/z/{id}")), "{url}");
    // The same state, the same link.
    let again = body_json(send(&h, post_json("/api/shortener", state)).await).await;
    assert_eq!(again["url"], created["url"]);

    let info = body_json(send(&h, get(&format!("/api/shortlinkinfo/{id}"), true)).await).await;
    let session = &info["sessions"][0];
    assert_eq!(session["source"], "int main(void) { return 7; }");
    assert_eq!(session["compilers"][0]["id"], "gcc");
    assert_eq!(session["compilers"][0]["options"], "-O1 -Wall");
    assert_eq!(session["executors"][0]["arguments"], "a b");
    assert_eq!(session["executors"][0]["stdin"], "in");
    assert_eq!(
        send(&h, get("/api/shortlinkinfo/nope", true)).await.status(),
        StatusCode::NOT_FOUND
    );

    let z = send(&h, get(&format!("/z/{id}"), false)).await;
    assert!(z.status().is_redirection());
    assert_eq!(z.headers()[header::LOCATION], format!("/l/{id}"));
    assert_eq!(send(&h, get("/z/nope", false)).await.status(), StatusCode::NOT_FOUND);

    // A layout, base64 of its JSON, and of its zlib-deflated JSON.
    let layout = json!({"content": [{"type": "row", "content": [
        {"type": "component", "componentName": "codeEditor", "componentState": {"source": "int x;", "lang": "c"}},
        {"type": "component", "componentName": "compiler", "componentState": {"compiler": "gcc", "options": "-O3"}}]}]});
    let plain = base64::engine::general_purpose::STANDARD.encode(layout.to_string());
    let opened = send(&h, get(&format!("/clientstate/{plain}"), false)).await;
    assert!(opened.status().is_redirection(), "{}", opened.status());
    let location = opened.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let link = location.strip_prefix("/l/").unwrap();
    let stored = body_json(send(&h, get(&format!("/api/v1/links/{link}"), true)).await).await;
    assert_eq!(stored["container"], "gcc");
    assert_eq!(stored["args"], json!(["-O3"]));
    assert_eq!(stored["files"][0], json!({"path": "main.c", "content": "int x;"}));
    let deflated = miniz_oxide::deflate::compress_to_vec_zlib(layout.to_string().as_bytes(), 6);
    let zipped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deflated);
    let opened = send(&h, get(&format!("/clientstate/{zipped}"), false)).await;
    assert_eq!(opened.headers()[header::LOCATION].to_str().unwrap(), location);

    for bad in ["!!!", "aGVsbG8", &base64::engine::general_purpose::STANDARD.encode(r#"{"x":1}"#)] {
        let response = send(&h, get(&format!("/clientstate/{bad}"), false)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}
