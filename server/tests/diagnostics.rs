//! Diagnostics in run answers (through the fake backend, which prints its stdin on stderr): the
//! container's `[diagnostics]` table is applied to the output, the list travels in the JSON and
//! archive answers and comes back from the cache. Likewise the demangled C++ names of a
//! container's `[assembly]` file, which the browser's demangle filter reads.

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::json;
use shared::api::v1::{RunRequest, RunResult};
use shared::cpio::Entry;
use shared::framing;

use common::*;

/// The harness with a "built" gcc image as well (the fake never opens it).
fn with_gcc() -> Harness {
    let h = harness(1, 4, 0, None);
    common::mark_built(&h.state.images, "gcc", "sha256:abc");
    h
}

const GCC_STDERR: &str = "main.c: In function 'main':\n/input/main.c:3:5: error: expected ';'\n    3 |     return y;\n      |     ^~~~~~\n";

#[tokio::test]
async fn a_json_answer_carries_diagnostics_and_the_cache_keeps_them() {
    let h = with_gcc();
    let body = json!({"container": "gcc", "stdin": GCC_STDERR,
                      "files": [{"path": "main.c", "content": "int main() {}\n"}]});
    let first = body_json(send(&h, json_run(body.clone())).await).await;
    let want = json!([{"path": "main.c", "line": 3, "column": 5, "end_line": 3,
                       "end_column": 11, "severity": "error", "message": "expected ';'",
                       "stream": "stderr"}]);
    assert_eq!(first["diagnostics"], want, "{first}");
    let second = body_json(send(&h, json_run(body)).await).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["diagnostics"], want);
}

#[tokio::test]
async fn the_archive_header_carries_them_and_containers_without_a_table_have_none() {
    let h = with_gcc();
    let request = RunRequest {
        container: "gcc".into(),
        stdin: Some(GCC_STDERR.into()),
        ..Default::default()
    };
    let req = Request::post("/api/v1/run")
        .header(header::CONTENT_TYPE, "application/x-pe-archive")
        .body(Body::from(archive_request(&request, &[Entry::file("main.c", "x")])))
        .unwrap();
    let bytes = send(&h, req).await.into_body().collect().await.unwrap().to_bytes();
    let (result, _): (RunResult, _) = framing::decode(&bytes, usize::MAX).unwrap();
    assert_eq!(result.diagnostics.len(), 1);
    assert_eq!((result.diagnostics[0].line, result.diagnostics[0].column), (3, 5));

    // busybox has no [diagnostics]: the field is left out of the answer.
    let mut plain = hello();
    plain["stdin"] = json!(GCC_STDERR);
    let answer = body_json(send(&h, json_run(plain)).await).await;
    assert!(answer.get("diagnostics").is_none(), "{answer}");
}

#[tokio::test]
async fn an_assembly_file_gets_its_cpp_names_demangled_in_the_answer() {
    let h = harness(1, 4, 0, None);
    common::mark_built(&h.state.images, "g++", "sha256:abc");
    let asm = "_Z3addii:\n\tcall\t_Z3addii.cold\n\tcall\tputs\n\tcall\t_Znot_a_name\n";
    let body = json!({"container": "g++", "stdin": asm, "env": {"FAKE_OUTPUT": "main.s"},
                      "files": [{"path": "main.cpp", "content": "int main() {}\n"}]});
    let want = json!({"_Z3addii": "add(int, int)", "_Z3addii.cold": "add(int, int).cold"});
    let first = body_json(send(&h, json_run(body.clone())).await).await;
    assert_eq!(first["demangled"], want, "{first}");
    let second = body_json(send(&h, json_run(body)).await).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["demangled"], want);

    // No [assembly] table (busybox), or no assembly file: no names.
    let mut plain = hello();
    plain["stdin"] = json!(asm);
    plain["env"] = json!({"FAKE_OUTPUT": "main.s"});
    let answer = body_json(send(&h, json_run(plain)).await).await;
    assert!(answer.get("demangled").is_none(), "{answer}");
}
