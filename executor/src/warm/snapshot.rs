//! Snapshot restore: a template VM boots once per image to its waiting point (image mounted,
//! blocked on the control port), is saved with QEMU migration, and every later VM of that image
//! starts from the save instead of booting.
//!
//! The template's guest RAM lives in a file (`memory-backend-file`, `share=on`, on tmpfs when
//! there is one) and is saved with `x-ignore-shared`, so the migration stream holds only device
//! state (tens of KiB, kept in memory). Each clone maps the RAM file copy-on-write
//! (`share=off`): it costs host memory only for the pages it writes, and nothing it writes
//! reaches the file or another clone. A clone gets its own I/O disk and control socket, loads
//! the device state over a Unix socket (`-incoming unix:`, so no helper process is spawned and
//! QEMU's `-sandbox spawn=deny` holds; the socket is made before QEMU drops to its
//! unprivileged user), and resumes where the template stopped: in
//! `wait_for_go`. The host connects to the clone's control port before the state is loaded, so
//! the guest never sees its host go away; `go` carries a fresh seed and the wall clock, which
//! the guest applies before anything else runs (every clone wakes with the template's random
//! state and time).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use images::ImageInfo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::qmp::{self, Qmp, QmpError};
use super::waiting::{self, Shape, WaitingVm, WarmError};
use crate::vm::VmConfig;
use crate::workdir;

/// The most device state a save may produce; more means guest RAM went into the stream.
const MAX_STATE_BYTES: usize = 64 << 20;
/// How long saving or loading a snapshot may take.
const MIGRATE_DEADLINE: Duration = Duration::from_secs(30);

/// What the directories holding templates' RAM files are called (see [`workdir`]).
pub const RAM_DIR_KIND: &str = "pe_snapshot";

/// One image's saved VM, from which clones start.
#[derive(Debug)]
pub struct Template {
    pub image: ImageInfo,
    memory_mib: u32,
    /// The scratch size its pre-made container was made for.
    scratch_mib: u32,
    /// The command its clones run to warm up (on the kernel command line of each).
    warm_up: Vec<String>,
    io_size: u64,
    /// Holds the RAM file; removed with the template.
    ram_dir: tempfile::TempDir,
    /// The device state, as QEMU's migration stream.
    state: Vec<u8>,
    /// How long the template took to boot and save.
    pub made_in: Duration,
}

impl Template {
    fn ram_path(&self) -> PathBuf {
        self.ram_dir.path().join("ram")
    }

    /// Host memory the template's RAM file holds (the pages the template touched).
    pub fn ram_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.ram_path()).map_or(0, |m| m.blocks() * 512)
    }

    /// Boots `image` to its waiting point and saves it.
    pub async fn create(
        config: &VmConfig,
        image: &ImageInfo,
        shape: Shape<'_>,
    ) -> Result<Template, WarmError> {
        let Shape { memory_mib, scratch_mib, io_size, .. } = shape;
        let started = Instant::now();
        let ram_dir = workdir::create(&ram_dir_base(&config.work_dir), RAM_DIR_KIND)
            .map_err(|source| WarmError::SnapshotDir { what: "the RAM file", source })?;
        let ram = ram_dir.path().join("ram");
        // QEMU reaches the host's save socket after it has switched to its unprivileged user:
        // the socket lives in a directory of its own that only that user (and root) can enter.
        let save_dir = workdir::create(&std::env::temp_dir(), SAVE_DIR_KIND)
            .map_err(|source| WarmError::SnapshotDir { what: "the save socket", source })?;
        let save_path = save_dir.path().join("save.sock");
        let listener = UnixListener::bind(&save_path)
            .map_err(|source| WarmError::Listen { path: save_path.clone(), source })?;
        let launched = waiting::launch(config, image, shape, "template", |cmd, dir| {
            ram_args(cmd, &ram, memory_mib, true);
            cmd.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()));
        });
        let mut vm = launched.await?;
        if let Some(lease) = &vm.confinement.lease {
            for path in [save_dir.path(), &save_path] {
                std::os::unix::fs::chown(path, Some(lease.uid), Some(lease.gid))
                    .map_err(|source| WarmError::Chown { path: path.to_owned(), source })?;
            }
        }
        waiting::wait_ready(&mut vm).await?;
        let qmp_path = vm.dir.path().join("qmp.sock");
        let state = async {
            let mut qmp = Qmp::connect(&qmp_path, Duration::from_secs(5)).await?;
            ignore_shared(&mut qmp).await?;
            // The guest is idle in `wait_for_go`; migrating it while it runs records it as
            // running, so clones resume by themselves once loaded.
            let uri = format!("unix:{}", save_path.display());
            let saving = |source| WarmError::Migration { what: "cannot receive", source };
            let receive = async {
                let (mut stream, _) = listener.accept().await.map_err(saving)?;
                let mut state = Vec::new();
                (&mut stream)
                    .take(MAX_STATE_BYTES as u64 + 1)
                    .read_to_end(&mut state)
                    .await
                    .map_err(saving)?;
                Ok::<_, WarmError>(state)
            };
            let migrate = async { Ok(qmp.execute("migrate", json!({ "uri": uri })).await?) };
            // Either failing ends both: a refused `migrate` never connects to the listener.
            let (state, _) = tokio::try_join!(receive, migrate)?;
            migration_done(&mut qmp, "saving").await?;
            if state.len() > MAX_STATE_BYTES {
                return Err(WarmError::StateTooLarge { max: MAX_STATE_BYTES });
            }
            let _ = qmp.execute("quit", json!({})).await;
            Ok(state)
        };
        let state = match tokio::time::timeout(MIGRATE_DEADLINE, state).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(WarmError::MigrationDeadline {
                    what: "saved",
                    within: MIGRATE_DEADLINE,
                });
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), vm.child.wait()).await;
        Ok(Template {
            image: image.clone(),
            memory_mib,
            scratch_mib,
            warm_up: shape.warm_up.to_vec(),
            io_size,
            ram_dir,
            state,
            made_in: started.elapsed(),
        })
    }

    /// Starts a clone and loads the saved state into it; returns once the clone runs, waiting
    /// for `go`. With `warm_up`, the guest first runs through the paths every job takes (see
    /// the guest's `control::warm_up`), off the job's critical path.
    pub async fn restore(&self, config: &VmConfig, warm_up: bool) -> Result<WaitingVm, WarmError> {
        let started = Instant::now();
        let ram = self.ram_path();
        let shape = Shape {
            memory_mib: self.memory_mib,
            scratch_mib: self.scratch_mib,
            warm_up: &self.warm_up,
            io_size: self.io_size,
        };
        let mut vm = waiting::launch(config, &self.image, shape, "clone", |cmd, dir| {
            ram_args(cmd, &ram, self.memory_mib, false);
            cmd.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()));
            // Listening from the command line: QEMU makes the socket before it switches to
            // its unprivileged user (`-runas`), which may not reach the work directory.
            cmd.arg("-incoming").arg(format!("unix:{}", dir.join("in.sock").display()));
        })
        .await?;
        let dir = vm.dir.path().to_owned();
        let load = async {
            // The control port first: the guest was saved with its host connected and must
            // find one connected when it wakes.
            waiting::connect_control(&mut vm).await?;
            let mut qmp = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(5)).await?;
            // Before any byte of the state arrives: the capability must match the saved one.
            ignore_shared(&mut qmp).await?;
            let loading = |source| WarmError::Migration { what: "cannot load", source };
            let mut stream = qmp::connect_unix(&dir.join("in.sock"), Duration::from_secs(5))
                .await
                .map_err(loading)?;
            stream.write_all(&self.state).await.map_err(loading)?;
            stream.shutdown().await.map_err(loading)?;
            migration_done(&mut qmp, "loading").await?;
            // A clone that QEMU left paused after loading is started here; `cont` on one that
            // already runs does nothing.
            let status = qmp.execute("query-status", json!({})).await?;
            if status.get("status").and_then(|s| s.as_str()) != Some("running") {
                qmp.execute("cont", json!({})).await?;
            }
            if warm_up {
                vm.warm_up_failed = waiting::warm_up(&mut vm).await?;
            }
            Ok::<_, WarmError>(())
        };
        match tokio::time::timeout(MIGRATE_DEADLINE, load).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(waiting::with_qemu_stderr(&mut vm, err).await),
            Err(_) => {
                return Err(WarmError::MigrationDeadline {
                    what: "restored",
                    within: MIGRATE_DEADLINE,
                });
            }
        }
        vm.started_in = started.elapsed();
        Ok(vm)
    }
}

/// Kind of the directory holding a template's save socket (in the system's temporary
/// directory, which every user can traverse; the directory itself is its QEMU's alone).
pub const SAVE_DIR_KIND: &str = "pe_save";

/// Guest RAM in a file: for the template (`shared`: its RAM is the file) or a clone (private
/// copy-on-write mapping of the file).
fn ram_args(cmd: &mut tokio::process::Command, path: &Path, memory_mib: u32, shared: bool) {
    cmd.args(["-M", "memory-backend=ram"]);
    cmd.arg("-object").arg(ram_backend(path, memory_mib, shared));
}

/// Waits until this QEMU's migration (outgoing or incoming) has completed; `what` names it in
/// the error if it failed.
async fn migration_done(qmp: &mut Qmp, what: &'static str) -> Result<(), WarmError> {
    loop {
        let status = qmp.execute("query-migrate", json!({})).await?;
        match status.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => {
                let why = status.get("error-desc").and_then(|s| s.as_str());
                let why = why.unwrap_or("no reason given").to_owned();
                return Err(WarmError::MigrationFailed { what, why });
            }
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Leaves RAM in a shared file backend out of the migration stream. Both sides must set it
/// (QEMU 7.2 has no command-line switch for it): a clone's QEMU gets it over QMP before the
/// host connects to its incoming socket.
async fn ignore_shared(qmp: &mut Qmp) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] }),
    )
    .await
    .map(drop)
}

fn ram_backend(path: &Path, memory_mib: u32, shared: bool) -> String {
    format!(
        "memory-backend-file,id=ram,size={memory_mib}M,mem-path={},share={}",
        path.display().to_string().replace(',', ",,"),
        if shared { "on" } else { "off" }
    )
}

/// tmpfs when the host has one (RAM files are read on every clone's page fault), else the work
/// directory.
pub fn ram_dir_base(work_dir: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = tempfile::tempfile_in(shm).is_ok();
    if writable { shm.to_owned() } else { work_dir.to_owned() }
}
