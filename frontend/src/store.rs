//! The app's reactive state, one [`Store`] in context: the catalog, the playground (one signal
//! per part, so typing in the editor does not rebuild the options form), the last run and the
//! share link; and the actions that change it (load, switch container, run, share).
//! (Over 600 lines: the app's state and its actions, runs and live runs included, in one place.)
//!
//! Unsaved edits are written to local storage on every change and come back on reload. A page
//! opened on `/l/{id}` shows the stored state and runs it (identical runs come from the cache);
//! after the first edit the address bar goes back to `/`, so a reload keeps the edits.

use std::collections::BTreeMap;
use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;
use shared::api::v1::{PlaygroundState, RunRequest};
use shared::cpio::Entry;
use shared::meta::{ContainerMeta, Rendered};

use crate::api::{self, ApiError, Container, RunOutput};
use crate::browser;
use crate::format;
use crate::live::{self, Heard};
use crate::playground::{InputFile, Playground, Setup};
use crate::route::Route;
use crate::theme::{self, Theme};

const STORAGE_KEY: &str = "pe.playground.v1";
/// The container a first visit opens.
const DEFAULT_CONTAINER: &str = "gcc";

/// Why the command line cannot be rendered (so the Run button is off).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The option the problem is about, to mark its field.
    pub option: Option<String>,
    pub message: String,
}

/// The outcome of the Share button.
#[derive(Debug, Clone, PartialEq)]
pub enum Share {
    Idle,
    Busy,
    Done { url: String, copied: bool },
    Failed(String),
}

/// A finished run, with how long the browser waited for it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub output: Arc<RunOutput>,
    pub meta: Option<Arc<ContainerMeta>>,
    pub waited_ms: f64,
}

/// How often the catalog is asked again while images are being built.
const BUILD_POLL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Store {
    pub catalog: RwSignal<Vec<Arc<Container>>>,
    /// A problem loading the catalog or a link, shown above everything.
    pub notice: RwSignal<Option<String>>,
    /// True once the first playground (saved, linked or default) is in place.
    pub loaded: RwSignal<bool>,

    /// The container, options, arguments and environment; `b` is the compare view's second
    /// setup, run on the same files when `comparing`.
    pub a: Side,
    pub b: Side,
    pub comparing: RwSignal<bool>,
    pub files: RwSignal<Vec<InputFile>>,
    pub active: RwSignal<usize>,
    pub stdin_file: RwSignal<Option<String>>,
    /// Bumped when the playground is replaced (a container, an example, a link) or a file is
    /// removed: the editor shows the open file again and the forms reread their values.
    pub revision: RwSignal<u64>,

    pub running_since: RwSignal<Option<f64>>,
    pub finished: RwSignal<Option<Finished>>,
    pub run_error: RwSignal<Option<String>>,
    /// The compare view's second result.
    pub finished_b: RwSignal<Option<Finished>>,
    pub run_error_b: RwSignal<Option<String>>,
    run_generation: StoredValue<u64>,
    /// Runs are live: output as it is written, stdin typed while the program runs.
    pub live: RwSignal<bool>,
    /// A live run is in flight (its terminal shows), and whether its stdin is still open.
    pub live_running: RwSignal<bool>,
    pub live_stdin_open: RwSignal<bool>,

    pub share: RwSignal<Share>,
    /// The state behind the link in the address bar, while the page still shows it.
    link_state: StoredValue<Option<PlaygroundState>>,

    pub monaco_ready: RwSignal<bool>,
    /// The chosen colour theme, whether the system prefers dark, and so whether the page is
    /// dark (see [`crate::theme`]).
    pub theme: RwSignal<Theme>,
    pub system_dark: RwSignal<bool>,
    pub dark: Memo<bool>,
    /// The keyboard shortcut list is open.
    pub shortcuts_open: RwSignal<bool>,
    /// The compact view for iframes (`/embed/...`): it does not touch the saved edits.
    pub embed: bool,
}

/// One setup's signals: a container, its option values, extra arguments and environment, and
/// what they render to. One signal per part, so typing in the editor rebuilds no form.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// Put before element ids: `""` for the first setup, `"b-"` for the compare view's second.
    pub prefix: &'static str,
    pub container: RwSignal<String>,
    pub options: RwSignal<BTreeMap<String, Value>>,
    pub args: RwSignal<String>,
    pub env: RwSignal<String>,
    /// Bumped when the whole setup is replaced: the forms reread their values.
    pub revision: RwSignal<u64>,
    pub meta: Memo<Option<Arc<ContainerMeta>>>,
    pub preview: Memo<Result<Rendered, Problem>>,
}

impl Side {
    fn new(prefix: &'static str, catalog: RwSignal<Vec<Arc<Container>>>) -> Side {
        let container = RwSignal::new(String::new());
        let options = RwSignal::new(BTreeMap::new());
        let args = RwSignal::new(String::new());
        let env = RwSignal::new(String::new());
        let meta = Memo::new(move |_| {
            let id = container.get();
            catalog.with(|c| c.iter().find(|c| c.meta.id == id).map(|c| Arc::new(c.meta.clone())))
        });
        let preview = Memo::new(move |_| {
            let Some(meta) = meta.get() else {
                return Err(Problem { option: None, message: "pick a container".into() });
            };
            let env_problem = env.with(|e| format::parse_env(e).err());
            if let Some(message) = env_problem {
                return Err(Problem { option: None, message });
            }
            options.with(|o| {
                args.with(|a| meta.render_with(o, &format::parse_args(a), browser::pattern_matches))
                    .map_err(|e| Problem {
                        option: Some(e.option().to_owned()),
                        message: e.to_string(),
                    })
            })
        });
        Side { prefix, container, options, args, env, revision: RwSignal::new(0), meta, preview }
    }

    /// The setup as plain data (tracked).
    pub fn get(&self) -> Setup {
        Setup {
            container: self.container.get(),
            options: self.options.get(),
            args: self.args.get(),
            env: self.env.get(),
        }
    }

    fn get_untracked(&self) -> Setup {
        untrack(|| self.get())
    }

    fn set(&self, setup: Setup) {
        self.container.set(setup.container);
        self.options.set(setup.options);
        self.args.set(setup.args);
        self.env.set(setup.env);
        self.revision.update(|r| *r += 1);
    }

    pub fn set_option(&self, id: &str, value: Value) {
        self.options.update(|o| {
            o.insert(id.to_owned(), value);
        });
    }
}

/// Shows a run's outcome in a side's result and error signals.
fn show_result(
    result: Result<RunOutput, ApiError>,
    meta: Option<Arc<ContainerMeta>>,
    started: f64,
    finished: RwSignal<Option<Finished>>,
    error: RwSignal<Option<String>>,
) {
    match result {
        Ok(output) => finished.set(Some(Finished {
            output: Arc::new(output),
            meta,
            waited_ms: browser::now_ms() - started,
        })),
        Err(ApiError::Aborted) => {}
        Err(e) => error.set(Some(e.to_string())),
    }
}

pub fn use_store() -> Store {
    expect_context::<Store>()
}

impl Store {
    pub fn new() -> Store {
        let catalog = RwSignal::new(Vec::<Arc<Container>>::new());
        let theme =
            RwSignal::new(Theme::parse(browser::storage_get(theme::STORAGE_KEY).as_deref()));
        let system_dark = RwSignal::new(false);
        let dark = Memo::new(move |_| theme.get().is_dark(system_dark.get()));
        Store {
            catalog,
            notice: RwSignal::new(None),
            loaded: RwSignal::new(false),
            a: Side::new("", catalog),
            b: Side::new("b-", catalog),
            comparing: RwSignal::new(false),
            files: RwSignal::new(Vec::new()),
            active: RwSignal::new(0),
            stdin_file: RwSignal::new(None),
            revision: RwSignal::new(0),
            running_since: RwSignal::new(None),
            finished: RwSignal::new(None),
            run_error: RwSignal::new(None),
            finished_b: RwSignal::new(None),
            run_error_b: RwSignal::new(None),
            live: RwSignal::new(false),
            live_running: RwSignal::new(false),
            live_stdin_open: RwSignal::new(false),
            run_generation: StoredValue::new(0),
            share: RwSignal::new(Share::Idle),
            link_state: StoredValue::new(None),
            monaco_ready: RwSignal::new(false),
            theme,
            system_dark,
            dark,
            shortcuts_open: RwSignal::new(false),
            embed: Route::current().is_embed(),
        }
    }

    /// The playground as it is now (tracked: an effect calling this reruns on every change).
    pub fn snapshot(&self) -> Playground {
        let a = self.a.get();
        Playground {
            container: a.container,
            options: a.options,
            args: a.args,
            env: a.env,
            files: self.files.get(),
            stdin_file: self.stdin_file.get(),
            active: self.active.get(),
            compare: self.comparing.get().then(|| self.b.get()),
        }
    }

    fn snapshot_untracked(&self) -> Playground {
        untrack(|| self.snapshot())
    }

    /// Puts a whole playground in place.
    pub fn load(&self, pg: Playground) {
        let active = pg.active.min(pg.files.len().saturating_sub(1));
        self.a.set(Setup {
            container: pg.container,
            options: pg.options,
            args: pg.args,
            env: pg.env,
        });
        self.comparing.set(pg.compare.is_some() && !self.embed);
        if let Some(b) = pg.compare {
            self.b.set(b);
        }
        self.files.set(pg.files);
        self.stdin_file.set(pg.stdin_file);
        self.active.set(active);
        self.revision.update(|r| *r += 1);
    }

    /// While the server builds images (a first start), asks for the catalog again every few
    /// seconds so that the badges show progress and a container runs once its image is there.
    fn follow_builds(self) {
        if !self.catalog.with_untracked(|c| c.iter().any(|c| c.pending())) {
            return;
        }
        set_timeout(
            move || {
                spawn_local(async move {
                    if let Ok(catalog) = api::containers().await {
                        self.catalog.set(catalog.into_iter().map(Arc::new).collect());
                    }
                    self.follow_builds();
                })
            },
            BUILD_POLL,
        );
    }

    pub fn container_by_id(&self, id: &str) -> Option<Arc<Container>> {
        self.catalog.with_untracked(|c| c.iter().find(|c| c.meta.id == id).cloned())
    }

    /// Loads the catalog, then the first playground: the link in the address bar, else the
    /// saved edits, else the default container's files.
    pub fn start(self) {
        let system_dark = browser::prefers_dark(move |dark| self.system_dark.set(dark));
        self.system_dark.set(system_dark);
        Effect::new(move |_| browser::set_page_theme(self.dark.get()));
        // A choice made in another page of the site (the tool page around an embedded view).
        let _ = window_event_listener(leptos::ev::storage, move |ev| {
            if ev.key().as_deref() == Some(theme::STORAGE_KEY) {
                self.theme.set(Theme::parse(ev.new_value().as_deref()));
            }
        });
        spawn_local(async move {
            match api::containers().await {
                Ok(catalog) => {
                    self.catalog.set(catalog.into_iter().map(Arc::new).collect());
                    self.follow_builds();
                }
                Err(e) => {
                    self.notice.set(Some(format!("Could not load the containers: {e}")));
                    return;
                }
            }
            let route = Route::current();
            if let Some(id) = route.link() {
                match api::get_link(id).await {
                    Ok(state) if self.container_by_id(&state.container).is_some() => {
                        self.load(Playground::from_state(state.clone()));
                        self.link_state.set_value(Some(state));
                        self.loaded.set(true);
                        self.run();
                        return;
                    }
                    Ok(state) => self.notice.set(Some(format!(
                        "This link uses the container {:?}, which this server does not have.",
                        state.container
                    ))),
                    Err(e) => self.notice.set(Some(format!("Could not open this link: {e}"))),
                }
                if !self.embed {
                    browser::replace_path("/");
                }
            }
            // A tool (and example) named by the address: `/?container=ID&example=NAME`, or the
            // embedded view `/embed/ID?example=NAME`.
            let named = route.container();
            if let Some(container) = named.as_deref().and_then(|id| self.container_by_id(id)) {
                let meta = &container.meta;
                let example = browser::query_param("example")
                    .and_then(|name| meta.examples.iter().find(|e| e.name == name));
                let pg = match example {
                    Some(example) => Playground::example(meta, example),
                    None => Playground::defaults(meta),
                };
                self.load(pg);
                self.loaded.set(true);
                if !self.embed {
                    browser::replace_path("/");
                }
                return;
            }
            let saved = browser::storage_get(STORAGE_KEY)
                .and_then(|s| serde_json::from_str::<Playground>(&s).ok())
                .filter(|pg| self.container_by_id(&pg.container).is_some());
            let pg = saved.or_else(|| {
                let catalog = self.catalog.get_untracked();
                let first = catalog
                    .iter()
                    .find(|c| c.meta.id == DEFAULT_CONTAINER)
                    .or_else(|| catalog.first())?;
                Some(Playground::defaults(&first.meta))
            });
            if let Some(pg) = pg {
                self.load(pg);
            }
            self.loaded.set(true);
        });

        // Keep edits in local storage; leave the link's address once the state differs.
        Effect::new(move |_| {
            let pg = self.snapshot();
            if !self.loaded.get() {
                return;
            }
            if self.embed {
                return;
            }
            if let Ok(json) = serde_json::to_string(&pg) {
                browser::storage_set(STORAGE_KEY, &json);
            }
            let diverged = self.link_state.with_value(|link| {
                link.as_ref().is_some_and(|l| pg.to_state().ok().as_ref() != Some(l))
            });
            if diverged {
                self.link_state.set_value(None);
                self.share.set(Share::Idle);
                browser::replace_path("/");
            }
        });
    }

    /// The theme toggle: flips what shows, then follows the system again; the choice is kept.
    pub fn toggle_theme(&self) {
        let next = self.theme.get_untracked().next(self.system_dark.get_untracked());
        match next.stored() {
            Some(value) => browser::storage_set(theme::STORAGE_KEY, value),
            None => browser::storage_remove(theme::STORAGE_KEY),
        }
        self.theme.set(next);
    }

    /// Switches to another container (see [`Playground::switch_to`]).
    pub fn switch_container(&self, id: &str) {
        let Some(new) = self.container_by_id(id) else { return };
        let old = self.a.meta.get_untracked();
        let pg = self.snapshot_untracked().switch_to(old.as_deref(), &new.meta);
        self.load(pg);
    }

    /// Loads one of the current container's examples.
    pub fn load_example(&self, index: usize) {
        let Some(meta) = self.a.meta.get_untracked() else { return };
        if let Some(example) = meta.examples.get(index) {
            let compare = self.comparing.get_untracked().then(|| self.b.get_untracked());
            self.load(Playground { compare, ..Playground::example(&meta, example) });
        }
    }

    /// Turns the compare view on (the second setup starts as a copy of the first, unless there
    /// is one already) or off.
    pub fn set_comparing(&self, on: bool) {
        if on && self.b.container.with_untracked(String::is_empty) {
            self.b.set(self.a.get_untracked());
        }
        self.comparing.set(on);
        self.finished_b.set(None);
        self.run_error_b.set(None);
    }

    /// Switches the compare view's second setup to another container, with its defaults.
    pub fn switch_container_b(&self, id: &str) {
        if let Some(new) = self.container_by_id(id) {
            self.b.set(Setup::defaults(&new.meta));
        }
    }

    /// Runs the playground (both setups in the compare view, one after the other, on the same
    /// files); a run in flight is cancelled.
    pub fn run(&self) {
        let store = *self;
        let comparing = self.comparing.get_untracked();
        if self.a.preview.with_untracked(Result::is_err)
            || (comparing && self.b.preview.with_untracked(Result::is_err))
        {
            return;
        }
        let pg = self.snapshot_untracked();
        let requests =
            pg.run_request().and_then(|(a, files)| Ok((a, pg.compare_request()?, files)));
        let (request, request_b, files) = match requests {
            Ok(requests) => requests,
            Err(message) => {
                self.run_error.set(Some(message));
                return;
            }
        };
        let generation = self.run_generation.get_value() + 1;
        self.run_generation.set_value(generation);
        let started = browser::now_ms();
        self.running_since.set(Some(started));
        self.run_error.set(None);
        self.run_error_b.set(None);
        let meta = self.a.meta.get_untracked();
        let meta_b = self.b.meta.get_untracked();
        if self.live.get_untracked() && !comparing {
            self.run_live(request, &files, meta, started, generation);
            return;
        }
        spawn_local(async move {
            let current = move || store.run_generation.get_value() == generation;
            let tree = meta.as_ref().is_some_and(|m| m.output_tree);
            let result = api::run(request, &files, tree).await;
            if !current() {
                return;
            }
            show_result(result, meta, started, store.finished, store.run_error);
            if let Some(request_b) = request_b {
                let started = browser::now_ms();
                let tree_b = meta_b.as_ref().is_some_and(|m| m.output_tree);
                let result = api::run(request_b, &files, tree_b).await;
                if !current() {
                    return;
                }
                show_result(result, meta_b, started, store.finished_b, store.run_error_b);
            }
            store.running_since.set(None);
        });
    }

    /// A live run: the terminal shows the output as it comes; what the stdin tab holds is sent
    /// first and stdin stays open for typing; the answer fills the result panel as usual.
    fn run_live(
        &self,
        mut request: RunRequest,
        files: &[Entry],
        meta: Option<Arc<ContainerMeta>>,
        started: f64,
        generation: u64,
    ) {
        let store = *self;
        let typed_first = request.stdin.take();
        let frame = match api::request_frame(&mut request, files) {
            Ok(frame) => frame,
            Err(e) => {
                self.run_error.set(Some(e.to_string()));
                self.running_since.set(None);
                return;
            }
        };
        api::cancel_run();
        self.finished.set(None);
        self.live_running.set(true);
        self.live_stdin_open.set(true);
        live::start(&frame, move |heard| {
            if store.run_generation.get_value() != generation {
                return;
            }
            match heard {
                Heard::Answer(bytes) => show_result(
                    api::unpack_result(&bytes),
                    meta.clone(),
                    started,
                    store.finished,
                    store.run_error,
                ),
                Heard::Error(message) => store.run_error.set(Some(message)),
                Heard::Closed(true) => store
                    .run_error
                    .set(Some("the live connection closed before the run ended".to_owned())),
                Heard::Closed(false) => {}
            }
            store.end_live();
        });
        if let Some(text) = typed_first.filter(|t| !t.is_empty()) {
            live::send_text(&text);
        }
    }

    /// The live run is over: the result panel replaces the terminal. The socket is let go
    /// after this turn (this runs inside one of its callbacks).
    fn end_live(&self) {
        self.running_since.set(None);
        self.live_running.set(false);
        self.live_stdin_open.set(false);
        set_timeout(live::stop_socket, std::time::Duration::ZERO);
    }

    /// Cancels the run in flight (a live run's socket closes: the server ends its VM).
    pub fn cancel(&self) {
        api::cancel_run();
        self.run_generation.update_value(|g| *g += 1);
        self.running_since.set(None);
        if self.live_running.get_untracked() {
            self.live_running.set(false);
            self.live_stdin_open.set(false);
            live::stop_socket();
        }
    }

    /// From the embedded view: stores the playground behind a permalink and opens it in the full
    /// app, in a new tab.
    pub fn open_in_app(&self) {
        let store = *self;
        let state = match self.snapshot_untracked().to_state() {
            Ok(state) => state,
            Err(message) => {
                self.notice.set(Some(message));
                return;
            }
        };
        spawn_local(async move {
            match api::create_link(&state).await {
                Ok(link) => browser::open_new_tab(&format!("{}{}", browser::origin(), link.url)),
                Err(e) => {
                    store.notice.set(Some(format!("Could not open it in Program Explorer: {e}")))
                }
            }
        });
    }

    /// Stores the playground behind a permalink, copies its address and shows it.
    pub fn share(&self) {
        let store = *self;
        let state = match self.snapshot_untracked().to_state() {
            Ok(state) => state,
            Err(message) => {
                self.share.set(Share::Failed(message));
                return;
            }
        };
        self.share.set(Share::Busy);
        spawn_local(async move {
            match api::create_link(&state).await {
                Ok(link) => {
                    let url = format!("{}{}", browser::origin(), link.url);
                    let copied = browser::copy_text(&url).await;
                    store.link_state.set_value(Some(state));
                    browser::replace_path(&link.url);
                    store.share.set(Share::Done { url, copied });
                }
                Err(e) => store.share.set(Share::Failed(e.to_string())),
            }
        });
    }
}
