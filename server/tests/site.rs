//! What is not a run: the catalog, the operations endpoints, the generated site (a page per tool,
//! no broken internal links) and the built app's static files.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;

use common::*;

#[tokio::test]
async fn the_catalog_lists_every_container_with_its_image_state() {
    let h = harness(1, 4, 0, None);
    let response = send(&h, Request::get("/api/v1/containers").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list = body_json(response).await;
    let ids: Vec<&str> =
        list.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"gcc") && ids.contains(&"graphviz") && ids.len() >= 13, "{ids:?}");
    let busybox = list.as_array().unwrap().iter().find(|c| c["id"] == "busybox").unwrap();
    assert_eq!(busybox["image_status"]["built"], true);
    assert_eq!(busybox["image_status"]["digest"], "sha256:abc");
    let one = send(&h, Request::get("/api/v1/containers/gcc").body(Body::empty()).unwrap()).await;
    let gcc = body_json(one).await;
    assert_eq!(gcc["image_status"]["built"], false);
    assert!(gcc["options"].as_array().unwrap().iter().any(|o| o["id"] == "optimization"));
    let missing =
        send(&h, Request::get("/api/v1/containers/nope").body(Body::empty()).unwrap()).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found", "nope").await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let h = harness(1, 4, 0, None);
    let health = send(&h, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready =
        body_json(send(&h, Request::get("/readyz").body(Body::empty()).unwrap()).await).await;
    assert_eq!(ready["ready"], true);
    body_json(send(&h, json_run(hello())).await).await;
    body_json(send(&h, json_run(hello())).await).await;
    let metrics = send(&h, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics.into_body().collect().await.unwrap().to_bytes().to_vec())
        .unwrap();
    for needle in [
        "pe_http_requests_total{route=\"/api/v1/run\",status=\"200\"} 2",
        "pe_cache_hits_total 1",
        "pe_run_duration_seconds_count{container=\"busybox\"} 1",
        "pe_queue_depth 0",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let openapi = body_json(
        send(&h, Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await,
    )
    .await;
    assert_eq!(openapi["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    assert!(openapi["paths"]["/api/v1/run"].is_object());
    assert!(openapi["paths"]["/api/v1/run/live"].is_object());
    // Security headers on every answer; frames refused outside /embed.
    let page = send(&h, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

/// Every internal link (href or src starting with "/") of a page.
fn internal_links(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for part in html.split(attr).skip(1) {
            let link = part.split('"').next().unwrap_or("").replace("&amp;", "&");
            if link.starts_with('/') && !link.starts_with("//") {
                links.push(link);
            }
        }
    }
    links
}

#[tokio::test]
async fn the_site_has_a_page_per_tool_and_no_broken_internal_links() {
    let h = harness(1, 4, 0, None);
    let get = |path: String| Request::get(path).body(Body::empty()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut queue: Vec<String> = vec!["/tools".into(), "/docs".into()];
    queue.extend(h.state.site.paths().map(str::to_owned));
    let mut broken = Vec::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let response = send(&h, get(path.clone())).await;
        let status = response.status();
        let is_html = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status != StatusCode::OK {
            broken.push(format!("{path}: {status}"));
            continue;
        }
        if is_html && (path.starts_with("/tools") || path.starts_with("/docs")) {
            queue.extend(internal_links(&String::from_utf8_lossy(&body)));
        }
    }
    assert!(broken.is_empty(), "broken internal links: {broken:?}");
    // Every catalog entry has its page, listed on the index.
    let index =
        send(&h, get("/tools".into())).await.into_body().collect().await.unwrap().to_bytes();
    let index = String::from_utf8_lossy(&index);
    for entry in h.state.catalog.iter() {
        assert!(seen.contains(&format!("/tools/{}", entry.meta.id)));
        assert!(
            index.contains(&format!("href=\"/tools/{}\"", entry.meta.id)),
            "{} not on the index",
            entry.meta.id
        );
    }
    let graphviz = send(&h, get("/tools/graphviz".into()))
        .await
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let graphviz = String::from_utf8_lossy(&graphviz);
    assert!(graphviz.contains("Pipeline as SVG") && graphviz.contains("src=\"/embed/graphviz\""));
    // The snippet is shown as text (the templates escape with numeric entities).
    assert!(graphviz.contains("&#60;iframe src=&#34;http://pe.example/embed/graphviz&#34;"));
    // The embed route may be framed; the rest may not.
    let embed = send(&h, get("/embed/graphviz".into())).await;
    assert!(embed.headers().get(header::X_FRAME_OPTIONS).is_none());
    assert!(
        embed.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors *")
    );
    assert!(seen.len() > 20, "{seen:?}");
}

#[tokio::test]
async fn the_built_app_is_served_with_precompressed_assets_and_no_fallback_for_missing_ones() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(dist.path().join("frontend-0123456789abcdef_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(dist.path().join("frontend-0123456789abcdef.js"), "console.log(1)").unwrap();
    let gz = std::process::Command::new("gzip")
        .arg("-k")
        .arg(dist.path().join("frontend-0123456789abcdef.js"))
        .status()
        .unwrap();
    assert!(gz.success());
    std::fs::create_dir(dist.path().join("vs")).unwrap();
    std::fs::write(dist.path().join("vs/loader.js"), "var x;").unwrap();
    let h = harness_with_static(1, 4, 0, None, Some(dist.path().to_owned()));
    let get = |path: &str| {
        Request::get(path).header(header::ACCEPT_ENCODING, "gzip").body(Body::empty()).unwrap()
    };

    for route in ["/", "/l/abc", "/embed/gcc"] {
        let page = send(&h, get(route)).await;
        assert_eq!(page.status(), StatusCode::OK, "{route}");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        let body = page.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"<!doctype html><title>app"), "{route}");
    }
    let js = send(&h, get("/frontend-0123456789abcdef.js")).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(js.headers()[header::CONTENT_ENCODING], "gzip", "the precompressed file is served");
    assert!(js.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    let monaco = send(&h, get("/vs/loader.js")).await;
    assert_eq!(
        monaco.headers()[header::CACHE_CONTROL],
        "public, max-age=3600",
        "not hashed: short lifetime"
    );
    let missing = send(&h, get("/frontend-ffffffffffffffff.js")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND, "a missing asset is a 404, never the app");
}
