//! The OpenAPI document of the HTTP API, generated from the code: the schemas are derived from
//! the wire types (`shared::api`, `shared::meta`, with `shared`'s `openapi` feature; their doc
//! comments become the descriptions), and each route is described by one `#[utoipa::path]`
//! item below, listed in [`ApiDoc`]'s `paths(...)`.
//!
//! 1. A route is added: describe it here (one item, and its name in `paths(...)`).
//! 2. A field is added to a wire type: nothing to do here, its schema follows.
//! 3. `pe openapi > docs/openapi.json` writes the committed copy; `tests/openapi.rs` fails when
//!    that copy differs from the generated document, when a described route is not served, or
//!    when a served API route is not described.
//!
//! The descriptions live here rather than on the handlers so that the handlers' modules stay
//! about handling; the test above keeps the two in step.

use shared::api::v1::{ErrorBody, LinkCreated, PlaygroundState, RunJsonRequest, RunJsonResult};
use utoipa::{OpenApi, ToResponse, ToSchema};

use super::containers::ContainerInfo;

/// The document, as `/api/v1/openapi.json` serves it and `docs/openapi.json` holds it.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().expect("the document is plain JSON");
    json.push('\n');
    json
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Program Explorer API",
        version = "1",
        description = "Run any container on any input in a fresh microVM. Errors are always \
            {\"error\": {\"code\", \"message\", \"request_id\"}}. See docs/API.md for curl examples. \
            Generated from the code (server/src/http/openapi.rs): `pe openapi > docs/openapi.json`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        containers,
        container,
        run,
        run_live,
        create_link,
        link,
        openapi_json,
        healthz,
        readyz,
        metrics,
        ce_languages,
        ce_compilers,
        ce_compilers_of,
        ce_compile,
        ce_shortener,
        ce_shortlinkinfo,
        ce_z,
        ce_clientstate,
    ),
    components(
        responses(Error, Retry),
        schemas(ErrorBody, shared::api::live::ClientMessage, shared::api::live::ServerEvent),
    ),
    tags(
        (name = "run", description = "Running jobs"),
        (name = "catalog", description = "The containers"),
        (name = "links", description = "Permalinks to playground states"),
        (name = "ops", description = "Health, readiness, metrics, this document"),
        (name = "compiler-explorer", description = "Compiler Explorer's REST API, for its existing clients (docs/API.md, 'Compiler Explorer clients')"),
    ),
)]
struct ApiDoc;

/// An error.
#[derive(ToResponse)]
#[allow(dead_code)]
struct Error(ErrorBody);

/// Refused for now; retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
#[allow(dead_code)]
struct Retry(ErrorBody);

/// A frame of the archive form: `<u32le header_len><JSON header><cpio newc archive>`.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct Archive(Vec<u8>);

/// The catalog.
#[utoipa::path(get, path = "/api/v1/containers", tag = "catalog", responses(
    (status = 200, description = "Every container with its metadata and image state", body = Vec<ContainerInfo>),
))]
#[allow(dead_code)]
fn containers() {}

/// One container.
#[utoipa::path(get, path = "/api/v1/containers/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Container id (`gcc`, `python`, ...)")),
    responses(
        (status = 200, description = "The container", body = ContainerInfo),
        (status = 404, response = Error),
    ),
)]
#[allow(dead_code)]
fn container() {}

/// Run a job.
///
/// Two forms. `application/json`: files inline, answered with JSON.
/// `application/x-pe-archive`: `<u32le header_len><RunRequest JSON><cpio newc of the input
/// files>`, answered with `<u32le header_len><RunResult JSON><cpio newc holding stdout, stderr
/// and output/<path>>` (a squashfs image instead of cpio with `?archive=squashfs` or `Accept:
/// application/vnd.squashfs`). When the header carries `inputs_digest`, a cached result is
/// answered before the archive is read.
#[utoipa::path(post, path = "/api/v1/run", tag = "run",
    params(
        ("cache" = Option<String>, Query, description = "`bypass` skips the result cache"),
        ("archive" = Option<String>, Query, description = "`squashfs` (or `cpio`, the default): the archive of an archive-form answer"),
    ),
    request_body(content(
        (RunJsonRequest = "application/json"),
        (Archive = "application/x-pe-archive"),
    )),
    responses(
        (status = 200, description = "The run happened (whatever its status)",
            headers(
                ("RateLimit-Limit" = u64, description = "Requests allowed in a window"),
                ("RateLimit-Remaining" = u64, description = "Requests left in this window"),
                ("RateLimit-Reset" = u64, description = "Seconds until the window resets"),
            ),
            content(
                (RunJsonResult = "application/json"),
                (Archive = "application/x-pe-archive"),
            ),
        ),
        (status = 400, response = Error),
        (status = 404, response = Error),
        (status = 413, response = Error),
        (status = 422, response = Error),
        (status = 429, response = Retry),
        (status = 503, response = Retry),
    ),
)]
#[allow(dead_code)]
fn run() {}

/// A live run over a WebSocket: output as it is written, stdin typed while it runs.
///
/// Upgrade to a WebSocket. The first message is the request as `POST /api/v1/run` takes it
/// (text: the JSON form; binary: the archive form). The server sends JSON events
/// (`ServerEvent`: started; stdout and stderr chunks with byte offsets; exit with the full
/// result, or error) and the client may send `ClientMessage`s (`{"type":"stdin","data":...}`,
/// `{"type":"stdin_close"}`, `{"type":"kill"}`). Refusals come as an error event, then a close.
/// See docs/API.md, 'Live runs'.
#[utoipa::path(get, path = "/api/v1/run/live", tag = "run", responses(
    (status = 101, description = "Switching protocols: the WebSocket is open"),
    (status = 400, description = "Not a WebSocket handshake"),
))]
#[allow(dead_code)]
fn run_live() {}

/// Store a playground state as a permalink.
///
/// The id is derived from the state: the same state always gets the same id. Links are
/// immutable; a state is at most 1 MiB.
#[utoipa::path(post, path = "/api/v1/links", tag = "links",
    request_body = PlaygroundState,
    responses(
        (status = 201, description = "Stored", body = LinkCreated),
        (status = 400, response = Error),
        (status = 404, response = Error),
        (status = 413, response = Error),
        (status = 429, response = Retry),
    ),
)]
#[allow(dead_code)]
fn create_link() {}

/// A stored playground state.
#[utoipa::path(get, path = "/api/v1/links/{id}", tag = "links",
    params(("id" = String, Path, description = "The id `POST /api/v1/links` gave")),
    responses(
        (status = 200, description = "The state", body = PlaygroundState),
        (status = 404, response = Error),
    ),
)]
#[allow(dead_code)]
fn link() {}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", responses(
    (status = 200, description = "OpenAPI 3.1", content_type = "application/json"),
))]
#[allow(dead_code)]
fn openapi_json() {}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses(
    (status = 200, description = "`ok`", content_type = "text/plain"),
))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: the executor can run jobs.
///
/// The body lists the problems found, the backend, the images built, the slots and the warm
/// VMs.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", content_type = "application/json"),
    (status = 503, description = "Not ready", content_type = "application/json"),
))]
#[allow(dead_code)]
fn readyz() {}

/// Metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Counters and gauges (requests, cache, runs, queue, warm VMs)",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
))]
#[allow(dead_code)]
fn metrics() {}

/// Compiler Explorer: the languages of the containers that opt in (`[compiler_explorer]`).
///
/// JSON with `Accept: application/json`, Compiler Explorer's plain-text table otherwise.
#[utoipa::path(get, path = "/api/languages", tag = "compiler-explorer",
    params(("fields" = Option<String>, Query, description = "Fields to list: a comma list, or `all`")),
    responses((status = 200, description = "The languages", content_type = "application/json")),
)]
#[allow(dead_code)]
fn ce_languages() {}

/// Compiler Explorer: every compiler (a compiler, or an interpreter listed for execution only).
#[utoipa::path(get, path = "/api/compilers", tag = "compiler-explorer",
    params(("fields" = Option<String>, Query, description = "Fields to list: a comma list, or `all`")),
    responses((status = 200, description = "The compilers", content_type = "application/json")),
)]
#[allow(dead_code)]
fn ce_compilers() {}

/// Compiler Explorer: the compilers of one language.
#[utoipa::path(get, path = "/api/compilers/{lang}", tag = "compiler-explorer",
    params(
        ("lang" = String, Path, description = "Compiler Explorer's language id (`c`, `c++`, `python`)"),
        ("fields" = Option<String>, Query, description = "Fields to list: a comma list, or `all`"),
    ),
    responses((status = 200, description = "The compilers", content_type = "application/json")),
)]
#[allow(dead_code)]
fn ce_compilers_of() {}

/// Compiler Explorer: compile (and, when asked, execute) a source.
///
/// The JSON body (`source`, `options.userArguments`, `options.compilerOptions`,
/// `options.filters`, `options.executeParameters`, `files`, `lang`, `bypassCache`) or the
/// plain-text form (the body is the source; query `options`, `filters`, `addFilters`,
/// `removeFilters`, `skipAsm`). Answered with Compiler Explorer's CompilationResult (JSON) or its
/// text layout.
#[utoipa::path(post, path = "/api/compiler/{id}/compile", tag = "compiler-explorer",
    params(("id" = String, Path, description = "The compiler id")),
    responses(
        (status = 200, description = "The compilation result", content_type = "application/json"),
        (status = 400, response = Error),
        (status = 404, response = Error),
        (status = 429, response = Retry),
        (status = 503, response = Retry),
    ),
)]
#[allow(dead_code)]
fn ce_compile() {}

/// Compiler Explorer: store a client state (`sessions`, or a layout with `content`) as a
/// permalink; answered with `{url}`.
#[utoipa::path(post, path = "/api/shortener", tag = "compiler-explorer",
    responses(
        (status = 200, description = "`{\"url\": ...}`", content_type = "application/json"),
        (status = 400, response = Error),
        (status = 429, response = Retry),
    ),
)]
#[allow(dead_code)]
fn ce_shortener() {}

/// Compiler Explorer: the client state behind a short link.
#[utoipa::path(get, path = "/api/shortlinkinfo/{id}", tag = "compiler-explorer",
    params(("id" = String, Path, description = "The link id")),
    responses(
        (status = 200, description = "The client state", content_type = "application/json"),
        (status = 404, response = Error),
    ),
)]
#[allow(dead_code)]
fn ce_shortlinkinfo() {}

/// Compiler Explorer: a short link; redirects to the playground on that state.
#[utoipa::path(get, path = "/z/{id}", tag = "compiler-explorer",
    params(("id" = String, Path, description = "The link id")),
    responses((status = 303, description = "To /l/{id}"), (status = 404, response = Error)),
)]
#[allow(dead_code)]
fn ce_z() {}

/// Compiler Explorer: a client state in the address (base64, plain or zlib-deflated); stored
/// as a permalink and redirected to.
#[utoipa::path(get, path = "/clientstate/{state}", tag = "compiler-explorer",
    params(("state" = String, Path, description = "The client state, base64")),
    responses((status = 303, description = "To /l/{id}"), (status = 400, response = Error)),
)]
#[allow(dead_code)]
fn ce_clientstate() {}
