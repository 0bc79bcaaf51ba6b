//! Building the catalog's images in the background while `pe serve` already serves
//! (`pe serve --build-missing`): a first start answers at once instead of after every image is
//! built. Images are built most used first, a few at a time ([`crate::image_cmd::default_build_jobs`]);
//! the catalog shows each waiting container as `queued` (with its place in line) or `building`
//! (with its step and progress), and its runs answer 503 `unavailable` with `Retry-After` until
//! the image is there. Everything else (the site, the other containers) works meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use images::ImageStore;
use serde::Serialize;

use crate::catalog::{self, Catalog};

/// The estimate of a build before any has finished: about what a Debian image takes on a
/// 2-core machine with a cold package cache (container-meta/README.md).
pub const DEFAULT_BUILD_SECS: f64 = 60.0;

/// The order containers are built in when this server has no usage yet: what people come for
/// first (a busybox image builds in a second and makes the smoke test work).
pub const POPULAR_FIRST: &[&str] = &[
    "busybox",
    "python",
    "gcc",
    "node",
    "g++",
    "bash",
    "rust",
    "go",
    "clang",
    "java",
    "typescript",
    "jq",
    "sqlite",
    "graphviz",
];

/// Where a container's image stands, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BuildState {
    /// Waiting for a builder; `position` 1 is next.
    Queued { position: usize, eta_secs: u64 },
    /// Being built: `step` is the builder's latest line, `progress` a fraction (estimated
    /// from the time builds take).
    Building { step: String, elapsed_secs: u64, progress: f64, eta_secs: u64 },
    /// The build failed; `pe image build ID` shows why in full.
    Failed { message: String },
}

impl BuildState {
    /// When a client should try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BuildState::Queued { eta_secs, .. } | BuildState::Building { eta_secs, .. } => {
                Some(Duration::from_secs((*eta_secs).clamp(5, 600)))
            }
            BuildState::Failed { .. } => None,
        }
    }

    /// A sentence for people (a run's 503 message).
    pub fn describe(&self, id: &str) -> String {
        match self {
            BuildState::Queued { position, eta_secs } => format!(
                "the image of {id:?} is queued for building ({} ahead of it); ready in about {}",
                position - 1,
                human_secs(*eta_secs)
            ),
            BuildState::Building { step, progress, eta_secs, .. } => format!(
                "the image of {id:?} is being built ({:.0}%: {step}); ready in about {}",
                progress * 100.0,
                human_secs(*eta_secs)
            ),
            BuildState::Failed { message } => {
                format!("the image of {id:?} failed to build on this server: {message}")
            }
        }
    }
}

fn human_secs(secs: u64) -> String {
    if secs < 90 { format!("{secs} s") } else { format!("{} min", secs.div_ceil(60)) }
}

/// Builds one image, reporting steps; the error is a sentence.
pub type BuildFn = dyn Fn(&str, &mut dyn FnMut(&str)) -> Result<(), String> + Send + Sync;

/// The background builds of one server. Empty (nothing queued) when the server does not build.
#[derive(Debug, Default)]
pub struct Builds {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<String>,
    building: BTreeMap<String, Current>,
    failed: BTreeMap<String, String>,
    /// How long the finished builds took, seconds.
    finished: Vec<f64>,
    jobs: usize,
}

#[derive(Debug)]
struct Current {
    step: String,
    started: Instant,
}

impl Builds {
    /// Queues `ids` (in that order) and starts `jobs` builder threads running `build`. The
    /// threads end when the queue is empty.
    pub fn start(ids: Vec<String>, jobs: usize, build: Arc<BuildFn>) -> Arc<Builds> {
        let jobs = jobs.max(1);
        let builds = Arc::new(Builds::default());
        {
            let mut inner = builds.lock();
            inner.queue = ids.into();
            inner.jobs = jobs;
        }
        for _ in 0..jobs {
            let (builds, build) = (builds.clone(), build.clone());
            std::thread::spawn(move || builds.work(&*build));
        }
        builds
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self, build: &BuildFn) {
        loop {
            let id = {
                let mut inner = self.lock();
                let Some(id) = inner.queue.pop_front() else { return };
                inner.building.insert(
                    id.clone(),
                    Current { step: "starting".into(), started: Instant::now() },
                );
                id
            };
            tracing::info!(container = %id, "building the image");
            let started = Instant::now();
            let result = build(&id, &mut |step: &str| {
                if let Some(current) = self.lock().building.get_mut(&id) {
                    current.step = step.trim().to_owned();
                }
            });
            let mut inner = self.lock();
            inner.building.remove(&id);
            match result {
                Ok(()) => {
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(container = %id, secs, "image built");
                    inner.finished.push(secs);
                }
                Err(message) => {
                    tracing::warn!(container = %id, error = %message, "image build failed");
                    inner.failed.insert(id, message);
                }
            }
        }
    }

    /// Where `id` stands; `None` when it is not (or no longer) waiting for a build here.
    pub fn state(&self, id: &str) -> Option<BuildState> {
        let inner = self.lock();
        let expected = inner.expected_secs();
        let jobs = inner.jobs.max(1) as f64;
        if let Some(current) = inner.building.get(id) {
            let elapsed = current.started.elapsed().as_secs_f64();
            return Some(BuildState::Building {
                step: current.step.clone(),
                elapsed_secs: elapsed as u64,
                progress: (elapsed / expected).min(0.95),
                eta_secs: (expected - elapsed).max(5.0).round() as u64,
            });
        }
        if let Some(index) = inner.queue.iter().position(|q| q == id) {
            // The builds running now finish first, then the ones ahead, `jobs` at a time.
            let running: f64 = inner
                .building
                .values()
                .map(|c| (expected - c.started.elapsed().as_secs_f64()).max(0.0))
                .sum();
            let eta = (running + index as f64 * expected) / jobs + expected;
            return Some(BuildState::Queued { position: index + 1, eta_secs: eta.round() as u64 });
        }
        inner.failed.get(id).map(|message| BuildState::Failed { message: message.clone() })
    }

    /// For a server shutting down: nothing more starts, the running builds are asked to stop
    /// (their mmdebstrap or mksquashfs gets SIGTERM; the build fails and removes its temporary
    /// directory), and this waits up to `timeout` for them. Answers whether they all ended.
    pub fn stop(&self, timeout: Duration) -> bool {
        self.lock().queue.clear();
        let started = Instant::now();
        loop {
            // Again each time: a builder may have been starting its child just now.
            images::build::stop_running_builds();
            if self.lock().building.is_empty() {
                return true;
            }
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many images are waiting or being built.
    pub fn pending(&self) -> usize {
        let inner = self.lock();
        inner.queue.len() + inner.building.len()
    }
}

impl Inner {
    /// What a build is expected to take: the mean of the builds done so far.
    fn expected_secs(&self) -> f64 {
        if self.finished.is_empty() {
            DEFAULT_BUILD_SECS
        } else {
            (self.finished.iter().sum::<f64>() / self.finished.len() as f64).max(1.0)
        }
    }
}

/// The containers whose image is missing or was built from another recipe, in build order:
/// the most used on this server (`used`, most first), then [`POPULAR_FIRST`], then the rest by
/// id; missing images before outdated ones (an outdated image still serves meanwhile).
pub fn build_order(catalog: &Catalog, images: &ImageStore, used: &[String]) -> Vec<String> {
    let mut ids: Vec<&str> = Vec::new();
    let ranked = used.iter().map(String::as_str).chain(POPULAR_FIRST.iter().copied());
    for id in ranked.chain(catalog.iter().map(|e| e.meta.id.as_str())) {
        if catalog.get(id).is_some() && !ids.contains(&id) {
            ids.push(id);
        }
    }
    let (mut missing, mut outdated) = (Vec::new(), Vec::new());
    for id in ids {
        let Some(entry) = catalog.get(id) else { continue };
        match images.resolve(id) {
            Err(_) => missing.push(id.to_owned()),
            Ok(image)
                if image.recipe.as_deref()
                    != Some(catalog::recipe(&entry.meta).fingerprint().as_str()) =>
            {
                outdated.push(id.to_owned())
            }
            Ok(_) => {}
        }
    }
    missing.extend(outdated);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Waits until `f` holds (the builder threads run on their own).
    fn eventually(mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn queued_then_building_then_ready_or_failed() {
        // Each build waits for a go from the test, after reporting a step.
        let (go_tx, go_rx) = mpsc::channel::<Result<(), String>>();
        let go_rx = Mutex::new(go_rx);
        let build: Arc<BuildFn> = Arc::new(move |id: &str, progress: &mut dyn FnMut(&str)| {
            progress(&format!("  installing {id}"));
            go_rx.lock().unwrap().recv().unwrap()
        });
        let ids = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let builds = Builds::start(ids, 1, build);
        eventually(|| matches!(builds.state("a"), Some(BuildState::Building { .. })));
        eventually(
            || matches!(builds.state("a"), Some(BuildState::Building { step, .. }) if step == "installing a"),
        );
        let Some(BuildState::Queued { position: 1, eta_secs: b_eta }) = builds.state("b") else {
            panic!("{:?}", builds.state("b"))
        };
        let Some(BuildState::Queued { position: 2, eta_secs: c_eta }) = builds.state("c") else {
            panic!("{:?}", builds.state("c"))
        };
        assert!(c_eta > b_eta, "later in line, later ready: {b_eta} {c_eta}");
        assert_eq!(builds.pending(), 3);
        assert_eq!(builds.state("elsewhere"), None);

        go_tx.send(Ok(())).unwrap();
        eventually(|| builds.state("a").is_none());
        eventually(|| matches!(builds.state("b"), Some(BuildState::Building { .. })));
        assert!(matches!(builds.state("c"), Some(BuildState::Queued { position: 1, .. })));

        go_tx.send(Err("mmdebstrap failed".into())).unwrap();
        eventually(|| matches!(builds.state("b"), Some(BuildState::Failed { .. })));
        let failed = builds.state("b").unwrap();
        assert_eq!(failed.retry_after(), None);
        assert!(failed.describe("b").contains("mmdebstrap failed"));

        go_tx.send(Ok(())).unwrap();
        eventually(|| builds.pending() == 0);
        assert_eq!(builds.state("c"), None);
    }

    #[test]
    fn two_builders_build_two_at_once() {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let build: Arc<BuildFn> = Arc::new(move |_: &str, _: &mut dyn FnMut(&str)| {
            go_rx.lock().unwrap().recv().unwrap();
            Ok(())
        });
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let builds = Builds::start(ids, 2, build);
        let building = |id| matches!(builds.state(id), Some(BuildState::Building { .. }));
        eventually(|| building("a") && building("b"));
        assert!(matches!(builds.state("c"), Some(BuildState::Queued { position: 1, .. })));
        for _ in 0..3 {
            go_tx.send(()).unwrap();
        }
        eventually(|| builds.pending() == 0);
    }

    #[test]
    fn stopping_starts_nothing_more_and_waits_for_the_running_build() {
        let built = Arc::new(Mutex::new(Vec::new()));
        let build: Arc<BuildFn> = Arc::new({
            let built = built.clone();
            move |id: &str, _: &mut dyn FnMut(&str)| {
                std::thread::sleep(Duration::from_millis(100));
                built.lock().unwrap().push(id.to_owned());
                Ok(())
            }
        });
        let builds = Builds::start(["a", "b", "c"].map(String::from).into(), 1, build);
        eventually(|| matches!(builds.state("a"), Some(BuildState::Building { .. })));
        assert!(builds.stop(Duration::from_secs(5)));
        assert_eq!(builds.pending(), 0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(*built.lock().unwrap(), ["a"], "b and c never started");
        assert_eq!(builds.state("b"), None);
    }

    #[test]
    fn messages_and_retry_times() {
        let queued = BuildState::Queued { position: 3, eta_secs: 200 };
        assert_eq!(queued.retry_after(), Some(Duration::from_secs(200)));
        assert!(queued.describe("go").contains("(2 ahead of it); ready in about 4 min"));
        let building = BuildState::Building {
            step: "packing".into(),
            elapsed_secs: 30,
            progress: 0.5,
            eta_secs: 1,
        };
        assert_eq!(building.retry_after(), Some(Duration::from_secs(5)), "never sooner than 5 s");
        assert!(building.describe("go").contains("(50%: packing); ready in about 1 s"));
    }

    #[test]
    fn most_used_first_then_popular_then_the_rest_missing_before_outdated() {
        use images::{ImageFormat, Ref};
        let catalog = Catalog::embedded().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::new(dir.path().to_owned());
        let built = |id: &str, recipe: Option<String>, n: usize| {
            let hex = format!("{n:064x}");
            std::fs::create_dir_all(dir.path().join("sha256")).unwrap();
            std::fs::write(dir.path().join("sha256").join(&hex), b"image").unwrap();
            let r = Ref {
                id: id.into(),
                digest: format!("sha256:{hex}"),
                format: ImageFormat::Squashfs,
                size: 5,
                built_at: None,
                recipe,
                build_secs: None,
                env: Vec::new(),
            };
            images.write_ref(&r).unwrap();
        };
        let fingerprint = |id: &str| catalog::recipe(&catalog.get(id).unwrap().meta).fingerprint();
        // busybox is up to date, gcc was built from an older recipe.
        built("busybox", Some(fingerprint("busybox")), 1);
        built("gcc", Some("old".into()), 2);

        let order =
            build_order(&catalog, &images, &["jq".into(), "no-such".into(), "busybox".into()]);
        assert_eq!(order.len(), catalog.len() - 1, "everything but busybox");
        assert_eq!(order[0], "jq", "the most used first");
        let popular: Vec<&str> = POPULAR_FIRST
            .iter()
            .copied()
            .filter(|id| !["busybox", "gcc", "jq"].contains(id))
            .collect();
        assert_eq!(order[1..=popular.len()], popular);
        let rest = &order[popular.len() + 1..order.len() - 1];
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "the rest by id: {rest:?}");
        assert_eq!(order.last().map(String::as_str), Some("gcc"), "outdated last");
        assert!(!order.contains(&"busybox".to_owned()));
    }
}
