//! Every HTTP request the app makes, and nothing else: the catalog, runs (archive form) and
//! permalinks. Requests go through the browser's `fetch`; a run can be cancelled, and starting a
//! new run cancels the one before it (one `AbortController` per run).
//! (Over 600 lines with its tests: every request the app makes, and unpacking both answer forms.)
//!
//! The run's body is built and its answer unpacked with the same codec the server uses
//! (`shared::framing`, `shared::cpio` and `shared::squashfs`, compiled to wasm), never a second copy in JavaScript.

use std::cell::RefCell;
use std::sync::Arc;

use js_sys::Uint8Array;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::api::v1::{
    self, ErrorBody, LinkCreated, PlaygroundState, RunRequest, RunResult, archive_paths,
};
use shared::cpio::{self, CpioError, Entry, EntryData, Limits};
use shared::framing::{self, FrameError};
use shared::limits::MAX_HEADER_BYTES;
use shared::meta::ContainerMeta;
use shared::squashfs::{self, Image, Node, NodeKind, ReadLimits, SquashfsError};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestInit, Response};

/// The media type of the archive form of `POST /api/v1/run`.
pub const ARCHIVE_TYPE: &str = "application/x-pe-archive";

/// Why a request failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an HTTP error and its JSON error body.
    #[error("{}", server_message(.message, *.retry_after))]
    Server {
        status: u16,
        code: Option<v1::ErrorCode>,
        message: String,
        /// `Retry-After` in seconds (429 and 503).
        retry_after: Option<u32>,
    },
    /// `fetch` itself failed: the server is down or the network is gone.
    #[error("could not reach the server: {0}")]
    Network(String),
    /// The request was cancelled (a newer run replaced it).
    #[error("the request was cancelled")]
    Aborted,
    #[error("the server's answer is not a valid frame")]
    Frame(#[from] FrameError),
    #[error("the server's archive is not valid")]
    Archive(#[from] CpioError),
    #[error("the server's squashfs answer cannot be read: {0}")]
    Squashfs(#[from] SquashfsError),
    #[error("the server's answer is not the JSON expected")]
    Json(#[from] serde_json::Error),
    /// The inputs could not be packed (a bad file name, too large).
    #[error("the input files cannot be sent: {0}")]
    Inputs(#[source] CpioError),
}

fn server_message(message: &str, retry_after: Option<u32>) -> String {
    let message = crate::format::sentence(message);
    match retry_after {
        Some(secs) if !message.contains("retry") => format!("{message} (retry in {secs} s)"),
        _ => message,
    }
}

/// A container of the catalog: its metadata and whether its image is built on this server.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub meta: ContainerMeta,
    pub built: bool,
    /// While the server builds the image (`pe serve --build-missing`): where it stands.
    pub build: Option<Build>,
}

/// A background build of a container's image, as the catalog tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Build {
    /// Waiting; `position` 1 is next.
    Queued {
        position: u64,
        eta_secs: u64,
    },
    /// Being built; `progress` is 0 to 1.
    Building {
        progress: f64,
        eta_secs: u64,
    },
    Failed,
}

impl Container {
    /// Whether the image is waiting or being built (the catalog is worth asking again).
    pub fn pending(&self) -> bool {
        matches!(self.build, Some(Build::Queued { .. } | Build::Building { .. }))
    }

    /// The badge for a container that cannot run yet: its build's state and when it will be
    /// ready, or "not built".
    pub fn badge(&self) -> Option<String> {
        let eta = |secs: u64| {
            if secs < 90 { format!("{secs} s") } else { format!("{} min", secs.div_ceil(60)) }
        };
        match (&self.build, self.built) {
            (Some(Build::Queued { position, eta_secs }), false) => {
                Some(format!("queued #{position}, ready in ~{}", eta(*eta_secs)))
            }
            (Some(Build::Building { progress, eta_secs }), false) => {
                Some(format!("building {:.0}%, ready in ~{}", progress * 100.0, eta(*eta_secs)))
            }
            (Some(Build::Failed), false) => Some("build failed".into()),
            (_, false) => Some("not built".into()),
            (_, true) => None,
        }
    }
}

fn parse_build(build: &serde_json::Value) -> Option<Build> {
    let number = |key: &str| build.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    match build.get("state")?.as_str()? {
        "queued" => {
            Some(Build::Queued { position: number("position"), eta_secs: number("eta_secs") })
        }
        "building" => Some(Build::Building {
            progress: build.get("progress").and_then(serde_json::Value::as_f64).unwrap_or(0.0),
            eta_secs: number("eta_secs"),
        }),
        "failed" => Some(Build::Failed),
        _ => None,
    }
}

/// What a run produced, unpacked.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    pub result: RunResult,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output files, paths relative to the output directory (a cpio answer, or a small squashfs
    /// one read at once).
    pub files: Vec<(String, Vec<u8>)>,
    /// A large squashfs answer: the tree, listed at once, its files read when opened.
    pub tree: Option<OutputTree>,
}

/// The output directory of a squashfs answer: the image is kept as it arrived, its tree listed
/// from the directory table, and a file decompressed only when [`OutputTree::read`] asks for it.
#[derive(Debug, Clone)]
pub struct OutputTree {
    image: Arc<Vec<u8>>,
    /// Folders and files under `output/`, depth-first, each folder before what it holds.
    pub entries: Vec<TreeEntry>,
}

/// One folder, file or symlink of an [`OutputTree`].
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Relative to the output directory (`site/index.html`).
    pub path: String,
    pub kind: NodeKind,
    node: Node,
}

impl TreeEntry {
    /// Components below the output directory, minus one (0 at the top).
    pub fn depth(&self) -> usize {
        self.path.matches('/').count()
    }
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }
    pub fn size(&self) -> u64 {
        match self.kind {
            NodeKind::File { size } => size,
            _ => 0,
        }
    }
}

impl PartialEq for OutputTree {
    /// The same answer: the image is never changed once received.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.image, &other.image)
    }
}

impl OutputTree {
    /// Decompresses one file (only that file's blocks and its fragment).
    pub fn read(&self, index: usize) -> Result<Vec<u8>, ApiError> {
        let entry = self
            .entries
            .get(index)
            .ok_or(ApiError::Squashfs(SquashfsError::Limit("no such entry".into())))?;
        let image = Image::open(&self.image, ReadLimits::ANSWER)?;
        Ok(image.read(&entry.node)?)
    }
    /// The image as it arrived, for "download all".
    pub fn image(&self) -> &[u8] {
        &self.image
    }
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.kind, NodeKind::File { .. })).count()
    }
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(TreeEntry::size).sum()
    }
}

/// `GET /api/v1/containers`.
pub async fn containers() -> Result<Vec<Container>, ApiError> {
    let response = send("GET", "/api/v1/containers", None, None).await?;
    let bytes = body(&response).await?;
    parse_catalog(&bytes)
}

/// Parses the catalog. Each entry is the container's metadata flattened together with
/// `long_description` and `image_status: {built, digest, size, build}`.
pub fn parse_catalog(bytes: &[u8]) -> Result<Vec<Container>, ApiError> {
    let entries: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(bytes)?;
    entries
        .into_iter()
        .map(|mut entry| {
            let status = entry.remove("image_status").unwrap_or_default();
            let built = status.get("built").and_then(serde_json::Value::as_bool).unwrap_or(false);
            let build = status.get("build").and_then(parse_build);
            entry.remove("long_description");
            let meta = serde_json::from_value(serde_json::Value::Object(entry))?;
            Ok(Container { meta, built, build })
        })
        .collect()
}

thread_local! {
    /// The controller of the run in flight, aborted when another run starts.
    static RUN_IN_FLIGHT: RefCell<Option<AbortController>> = const { RefCell::new(None) };
}

/// Cancels the run in flight, if any.
pub fn cancel_run() {
    if let Some(controller) = RUN_IN_FLIGHT.with(|c| c.borrow_mut().take()) {
        controller.abort();
    }
}

/// The archive of input files and the digest the server caches by.
pub fn pack_inputs(files: &[Entry], stdin: &[u8]) -> Result<(Vec<u8>, String), ApiError> {
    let archive = cpio::encode(files, &Limits::INPUT).map_err(ApiError::Inputs)?;
    Ok((archive, v1::inputs_digest(files, stdin)))
}

/// Output files an answer may hold and still be shown as tabs, every file read at once; more (or
/// [`SMALL_OUTPUT_BYTES`] or more in all) and a squashfs answer is shown as a tree read lazily,
/// and the next run of the same container asks for squashfs (docs/API.md, "Which answer").
pub const SMALL_OUTPUT_FILES: usize = 32;
/// See [`SMALL_OUTPUT_FILES`].
pub const SMALL_OUTPUT_BYTES: u64 = 4 << 20;

thread_local! {
    /// Containers whose last run's outputs were many or large: their next run asks for squashfs.
    static LARGE_OUTPUTS: RefCell<std::collections::HashSet<String>> = RefCell::default();
}

/// Whether a run of `container` asks for a squashfs answer: its metadata says its output is a
/// tree (`output_tree = true`), or its last run in this page produced many or large outputs.
pub fn wants_squashfs(container: &str, meta_says_tree: bool) -> bool {
    meta_says_tree || LARGE_OUTPUTS.with(|l| l.borrow().contains(container))
}

/// Remembers whether this run's outputs were many or large, for the next run of `container`.
fn remember_output_size(container: &str, output: &RunOutput) {
    let (count, bytes) = match &output.tree {
        Some(tree) => (tree.file_count(), tree.total_bytes()),
        None => (output.files.len(), output.files.iter().map(|(_, data)| data.len() as u64).sum()),
    };
    let large = count > SMALL_OUTPUT_FILES || bytes >= SMALL_OUTPUT_BYTES;
    LARGE_OUTPUTS.with(|l| {
        let mut l = l.borrow_mut();
        if large {
            l.insert(container.to_owned());
        } else {
            l.remove(container);
        }
    });
}

/// `POST /api/v1/run` in the archive form: `<u32 len><RunRequest JSON><cpio of files>`; the
/// answer is cpio, or squashfs (`?archive=squashfs`) when [`wants_squashfs`] says so.
/// Cancels the previous run.
/// The archive form of a run request: its header (with the inputs' digest set) and the cpio of
/// `files`. A live run sends the same frame as its first message.
pub fn request_frame(request: &mut RunRequest, files: &[Entry]) -> Result<Vec<u8>, ApiError> {
    let stdin = request.stdin.clone().unwrap_or_default();
    let (archive, digest) = pack_inputs(files, stdin.as_bytes())?;
    request.inputs_digest = Some(digest);
    Ok(framing::encode(request, &archive)?)
}

pub async fn run(
    mut request: RunRequest,
    files: &[Entry],
    meta_says_tree: bool,
) -> Result<RunOutput, ApiError> {
    let container = request.container.clone();
    let path = if wants_squashfs(&container, meta_says_tree) {
        "/api/v1/run?archive=squashfs"
    } else {
        "/api/v1/run"
    };
    let frame = request_frame(&mut request, files)?;

    cancel_run();
    let controller = AbortController::new().map_err(|e| ApiError::Network(js_message(&e)))?;
    RUN_IN_FLIGHT.with(|c| *c.borrow_mut() = Some(controller.clone()));
    let result = async {
        let response = send("POST", path, Some((ARCHIVE_TYPE, &frame)), Some(&controller)).await?;
        unpack_owned(body(&response).await?)
    }
    .await;
    if let Ok(output) = &result {
        remember_output_size(&container, output);
    }
    RUN_IN_FLIGHT.with(|c| {
        let mut current = c.borrow_mut();
        if current.as_ref() == Some(&controller) {
            *current = None;
        }
    });
    result
}

/// Splits a run's answer into its result header, stdout, stderr and output files. The archive
/// is cpio or squashfs (told apart by its magic number).
pub fn unpack_result(bytes: &[u8]) -> Result<RunOutput, ApiError> {
    let (result, archive): (RunResult, &[u8]) = framing::decode(bytes, MAX_HEADER_BYTES)?;
    let mut output =
        RunOutput { result, stdout: Vec::new(), stderr: Vec::new(), files: Vec::new(), tree: None };
    if archive.get(..4) == Some(&squashfs::MAGIC.to_le_bytes()[..]) {
        unpack_squashfs(archive.to_vec(), &mut output)?;
        return Ok(output);
    }
    let prefix = format!("{}/", archive_paths::OUTPUT_DIR);
    for entry in cpio::decode(archive, &Limits::MAX)? {
        let EntryData::File(data) = entry.data else { continue };
        match entry.path.as_str() {
            archive_paths::STDOUT => output.stdout = data,
            archive_paths::STDERR => output.stderr = data,
            path => {
                if let Some(name) = path.strip_prefix(&prefix) {
                    output.files.push((name.to_owned(), data));
                }
            }
        }
    }
    output.files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(output)
}

/// [`unpack_result`] for an answer the caller gives up: a squashfs image is kept in the answer's
/// own buffer (its header dropped in place), not copied, so the wasm memory holds it once.
fn unpack_owned(mut bytes: Vec<u8>) -> Result<RunOutput, ApiError> {
    let (result, archive): (RunResult, &[u8]) = framing::decode(&bytes, MAX_HEADER_BYTES)?;
    if archive.get(..4) != Some(&squashfs::MAGIC.to_le_bytes()[..]) {
        return unpack_result(&bytes);
    }
    let header = bytes.len() - archive.len();
    let mut output =
        RunOutput { result, stdout: Vec::new(), stderr: Vec::new(), files: Vec::new(), tree: None };
    bytes.drain(..header);
    unpack_squashfs(bytes, &mut output)?;
    Ok(output)
}

/// A squashfs answer: lists the tree and reads stdout and stderr at once. A small output (few
/// files, few bytes) is read at once too and shown as tabs; a larger one stays in the image.
fn unpack_squashfs(image_bytes: Vec<u8>, output: &mut RunOutput) -> Result<(), ApiError> {
    let image_bytes = Arc::new(image_bytes);
    let image = Image::open(&image_bytes, ReadLimits::ANSWER)?;
    let prefix = format!("{}/", archive_paths::OUTPUT_DIR);
    let mut entries = Vec::new();
    for node in image.list()? {
        match node.path.as_str() {
            archive_paths::STDOUT => output.stdout = image.read(&node)?,
            archive_paths::STDERR => output.stderr = image.read(&node)?,
            path => {
                if let Some(name) = path.strip_prefix(&prefix) {
                    entries.push(TreeEntry {
                        path: name.to_owned(),
                        kind: node.kind.clone(),
                        node,
                    });
                }
            }
        }
    }
    // Depth-first by components, so a folder comes right before what it holds.
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    let tree = OutputTree { image: image_bytes.clone(), entries };
    let small = tree.file_count() <= SMALL_OUTPUT_FILES && tree.total_bytes() < SMALL_OUTPUT_BYTES;
    if small && tree.entries.iter().all(|e| !matches!(e.kind, NodeKind::Symlink { .. })) {
        for entry in tree.entries.iter().filter(|e| !e.is_dir()) {
            output.files.push((entry.path.clone(), image.read(&entry.node)?));
        }
    } else {
        drop(image);
        output.tree = Some(tree);
    }
    Ok(())
}

/// `POST /api/v1/links`: stores the state, answers its id and path (`/l/{id}`).
pub async fn create_link(state: &PlaygroundState) -> Result<LinkCreated, ApiError> {
    post_json("/api/v1/links", state).await
}

/// `GET /api/v1/links/{id}`.
pub async fn get_link(id: &str) -> Result<PlaygroundState, ApiError> {
    let path = format!("/api/v1/links/{}", js_sys::encode_uri_component(id));
    let response = send("GET", &path, None, None).await?;
    Ok(serde_json::from_slice(&body(&response).await?)?)
}

async fn post_json<B: Serialize, T: DeserializeOwned>(
    path: &str,
    value: &B,
) -> Result<T, ApiError> {
    let json = serde_json::to_vec(value)?;
    let response = send("POST", path, Some(("application/json", &json)), None).await?;
    Ok(serde_json::from_slice(&body(&response).await?)?)
}

/// Sends a request; an HTTP error status becomes [`ApiError::Server`].
async fn send(
    method: &str,
    path: &str,
    payload: Option<(&str, &[u8])>,
    abort: Option<&AbortController>,
) -> Result<Response, ApiError> {
    let network = |e: JsValue| ApiError::Network(js_message(&e));
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Headers::new().map_err(network)?;
    if let Some((content_type, bytes)) = payload {
        headers.set("Content-Type", content_type).map_err(network)?;
        init.set_body(&Uint8Array::from(bytes));
    }
    init.set_headers(&headers);
    if let Some(controller) = abort {
        init.set_signal(Some(&controller.signal()));
    }
    let window = web_sys::window().ok_or_else(|| ApiError::Network("no window".into()))?;
    let answer = JsFuture::from(window.fetch_with_str_and_init(path, &init)).await;
    let response: Response = match answer {
        Ok(value) => value.unchecked_into(),
        Err(_) if abort.is_some_and(|c| c.signal().aborted()) => return Err(ApiError::Aborted),
        Err(e) => return Err(network(e)),
    };
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let retry_after = response
        .headers()
        .get("Retry-After")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok());
    let bytes = body(&response).await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => (Some(body.error.code), body.error.message),
        Err(_) => (None, format!("the server answered {status} {}", response.status_text())),
    };
    Err(ApiError::Server { status, code, message, retry_after })
}

async fn body(response: &Response) -> Result<Vec<u8>, ApiError> {
    let network = |e: JsValue| {
        if e.dyn_ref::<web_sys::DomException>().is_some_and(|d| d.name() == "AbortError") {
            ApiError::Aborted
        } else {
            ApiError::Network(js_message(&e))
        }
    };
    let buffer =
        JsFuture::from(response.array_buffer().map_err(network)?).await.map_err(network)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// The message of a JavaScript error value.
fn js_message(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_entries_keep_their_image_status() {
        let json = br#"[{"id":"busybox","name":"BusyBox","version":"1","description":"d",
            "image":{"debian":[],"oci_archive":null,"builtin":"busybox"},
            "run":{"argv":["sh"]},"long_description":"x",
            "image_status":{"built":true,"digest":"sha256:00","size":1}}]"#;
        let catalog = parse_catalog(json).unwrap();
        assert_eq!(catalog[0].meta.id, "busybox");
        assert!(catalog[0].built);
        assert_eq!(catalog[0].badge(), None);
        assert!(!catalog[0].pending());
    }

    #[test]
    fn images_being_built_say_where_they_stand_and_when_they_will_be_ready() {
        let entry = |status: &str| {
            let json = format!(
                r#"[{{"id":"go","name":"Go","version":"1","description":"d",
                "image":{{"debian":["golang-go"]}},"run":{{"argv":["go"]}},
                "image_status":{status}}}]"#
            );
            parse_catalog(json.as_bytes()).unwrap().remove(0)
        };
        let queued =
            entry(r#"{"built":false,"build":{"state":"queued","position":3,"eta_secs":200}}"#);
        assert_eq!(queued.build, Some(Build::Queued { position: 3, eta_secs: 200 }));
        assert_eq!(queued.badge().as_deref(), Some("queued #3, ready in ~4 min"));
        assert!(queued.pending());
        let building = entry(
            r#"{"built":false,"build":{"state":"building","step":"packing","elapsed_secs":30,"progress":0.5,"eta_secs":30}}"#,
        );
        assert_eq!(building.badge().as_deref(), Some("building 50%, ready in ~30 s"));
        assert!(building.pending());
        let failed = entry(r#"{"built":false,"build":{"state":"failed","message":"no network"}}"#);
        assert_eq!(failed.badge().as_deref(), Some("build failed"));
        assert!(!failed.pending());
        let missing = entry(r#"{"built":false}"#);
        assert_eq!(missing.badge().as_deref(), Some("not built"));
        assert!(!missing.pending());
        // An outdated image being rebuilt still runs: no badge, but worth asking again.
        let rebuilding =
            entry(r#"{"built":true,"build":{"state":"queued","position":1,"eta_secs":60}}"#);
        assert_eq!(rebuilding.badge(), None);
    }

    #[test]
    fn results_unpack_stdout_stderr_and_output_files() {
        let result: RunResult = serde_json::from_value(serde_json::json!({
            "status": "exited", "exit_code": 0, "argv": ["sh"],
            "image": {"id": "busybox", "digest": "sha256:00"}, "backend": {"kind": "microvm"},
            "cached": true, "timings_ms": {"queue": 0, "boot": 1, "run": 2, "total": 3},
            "usage": {"user_ms": 0, "sys_ms": 0, "max_rss_kib": 0},
            "truncated": {"stdout": false, "stderr": false, "files": false}
        }))
        .unwrap();
        let archive = cpio::encode(
            &[
                Entry::file("stdout", "hi\n"),
                Entry::file("stderr", ""),
                Entry::dir("output"),
                Entry::file("output/b.svg", "<svg/>"),
                Entry::file("output/a.txt", "a"),
            ],
            &Limits::MAX,
        )
        .unwrap();
        let out = unpack_result(&framing::encode(&result, &archive).unwrap()).unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["a.txt", "b.svg"]);
        assert!(out.result.cached);
    }

    fn result() -> RunResult {
        serde_json::from_value(serde_json::json!({
            "status": "exited", "exit_code": 0, "argv": ["sh"],
            "image": {"id": "busybox", "digest": "sha256:00"}, "backend": {"kind": "microvm"},
            "cached": false, "timings_ms": {"queue": 0, "boot": 1, "run": 2, "total": 3},
            "usage": {"user_ms": 0, "sys_ms": 0, "max_rss_kib": 0},
            "truncated": {"stdout": false, "stderr": false, "files": false}
        }))
        .unwrap()
    }

    #[test]
    fn small_squashfs_answers_are_read_at_once_and_shown_as_tabs() {
        let image = squashfs::write(&[
            Entry::file("stdout", "hi\n"),
            Entry::file("stderr", "warn\n"),
            Entry::dir("output"),
            Entry::file("output/b.svg", "<svg/>"),
            Entry::file("output/a.txt", "a"),
        ])
        .unwrap();
        let out = unpack_result(&framing::encode(&result(), &image).unwrap()).unwrap();
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"hi\n"[..], &b"warn\n"[..]));
        assert_eq!(
            out.files,
            [("a.txt".to_owned(), b"a".to_vec()), ("b.svg".into(), b"<svg/>".to_vec())]
        );
        assert!(out.tree.is_none());
    }

    #[test]
    fn large_squashfs_answers_list_a_tree_and_read_files_when_asked() {
        let mut entries = vec![
            Entry::file("stdout", "done\n"),
            Entry::dir("output"),
            Entry::dir("output/site"),
            Entry::file("output/site.txt", "beside, not inside"),
        ];
        for i in 0..100 {
            entries.push(Entry::file(format!("output/site/p{i:03}.html"), format!("<p>{i}</p>")));
        }
        let image = squashfs::write(&entries).unwrap();
        let out = unpack_result(&framing::encode(&result(), &image).unwrap()).unwrap();
        assert_eq!(out.stdout, b"done\n");
        assert!(out.files.is_empty());
        let tree = out.tree.unwrap();
        assert_eq!((tree.file_count(), tree.entries.len()), (101, 102));
        // Depth-first: the folder, then what it holds, then its sibling `site.txt`.
        assert_eq!(tree.entries[0].path, "site");
        assert_eq!(tree.entries[1].path, "site/p000.html");
        assert_eq!(tree.entries[101].path, "site.txt");
        assert_eq!(tree.entries[43].depth(), 1);
        assert_eq!(tree.read(43).unwrap(), b"<p>42</p>");
        assert_eq!(tree.image(), image.as_slice());
        assert!(tree.total_bytes() > 900);
        // The same answer unpacked in place.
        let owned = unpack_owned(framing::encode(&result(), &image).unwrap()).unwrap();
        let owned_tree = owned.tree.unwrap();
        assert_eq!(owned.stdout, b"done\n");
        assert_eq!(owned_tree.image(), image.as_slice());
        assert_eq!(owned_tree.read(43).unwrap(), b"<p>42</p>");
    }

    #[test]
    fn many_outputs_make_the_next_run_ask_for_squashfs() {
        let small = unpack_result(
            &framing::encode(
                &result(),
                &cpio::encode(&[Entry::file("output/a", "x")], &Limits::MAX).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let many: Vec<Entry> =
            (0..=SMALL_OUTPUT_FILES).map(|i| Entry::file(format!("output/{i}"), "x")).collect();
        let many = unpack_result(
            &framing::encode(&result(), &cpio::encode(&many, &Limits::MAX).unwrap()).unwrap(),
        )
        .unwrap();
        assert!(!wants_squashfs("busybox", false));
        assert!(wants_squashfs("busybox", true));
        remember_output_size("busybox", &many);
        assert!(wants_squashfs("busybox", false));
        remember_output_size("busybox", &small);
        assert!(!wants_squashfs("busybox", false));
    }

    #[test]
    fn retry_time_is_added_once() {
        assert_eq!(server_message("busy", Some(3)), "Busy (retry in 3 s)");
        assert_eq!(server_message("busy; retry in 3 s", Some(3)), "Busy; retry in 3 s");
    }
}
