//! The browser app: a Leptos single-page app (client-side rendered, wasm) with Monaco as the
//! editor, built by Trunk (`Trunk.toml` at the workspace root; `frontend/build.sh` builds and
//! precompresses `dist/`, which `pe serve --static-dir dist` serves).
//!
//! 1. [`store`] holds the state in context: the catalog, the playground (container, option
//!    values, extra arguments and environment, input files, which file is stdin), the last run;
//!    in the compare view a second setup and its run. [`playground`] is the same state as plain
//!    data, with the rules for permalinks and runs; [`compare`] pairs two runs' outputs for the
//!    diff; [`theme`] is the light/dark choice.
//! 2. [`components`] render it, one small component per file: the container picker, the options
//!    form generated from the container's metadata, the exact command line (rendered by
//!    `shared::meta::ContainerMeta::render_with`, the function the server uses, with the
//!    browser's `RegExp` for option patterns), the file tabs and the Monaco editor, the Run
//!    button, the output with a viewer per file, the compare view with Monaco's diff editor, the
//!    theme toggle and the shortcut list.
//! 3. [`api`] is the only module that talks HTTP. A run is sent in the archive form: the
//!    request header and a cpio archive of the files, built with `shared::framing` and
//!    `shared::cpio` compiled to wasm; the answer is unpacked with the same codec.
//! 4. [`links`] ties the source editor to the run's views: the diagnostics (Monaco markers, a
//!    count on each file's tab, a list under the output whose entries jump to the spot) and the
//!    assembly pane beside the source (filtered by `shared::asm`, lines highlighted both ways).
//! 5. Unsaved edits live in local storage; Share stores the state with `POST /api/v1/links`,
//!    and `/l/{id}` opens it again ([`route`]: the addresses the app answers).
#![forbid(unsafe_code)]

mod api;
mod browser;
mod compare;
mod components;
mod format;
mod links;
mod live;
mod monaco;
mod playground;
mod route;
mod store;
mod theme;

/// Mounts the app on the page's body.
pub fn start() {
    // A panic (a bug) says what and where in the console instead of a bare "unreachable".
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&info.to_string().into())));
    leptos::mount::mount_to_body(components::app::App);
}
