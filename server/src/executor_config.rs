//! Where the executor's parts are and how it runs VMs: flags shared by `pe serve`, `pe run`,
//! `pe doctor` and `pe image`. Every flag is also an environment variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use executor::confine::{Cgroups, QemuUsers};
use executor::pool::{Backend, MicroVm};
use executor::sandbox::{Sandbox, SandboxConfig};
use executor::vm::accel::{Accel, AccelChoice, AccelReport};
use executor::vm::probe;
use executor::vm::{QemuUser, VmConfig};
use images::ImageStore;
use std::sync::Arc;

/// The cache directory when `PE_CACHE_DIR` is not set: `~/.cache/program-explorer`.
pub fn default_cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/lib"), PathBuf::from);
    home.join(".cache/program-explorer")
}

/// The host's crun, which the sandbox backend runs.
const SANDBOX_CRUN: &str = "/usr/bin/crun";

/// `kind:` and a digest of the parts' identities (path, size, modification time, inode): a
/// rebuilt kernel or initramfs, or an upgraded crun, is a new identity and so a new set of cache
/// keys. Stat rather than content: cheap at start, and a rebuild that happens to be identical
/// only costs cache misses.
fn identity(kind: &str, parts: &[&Path]) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_os_str().as_encoded_bytes());
        if let Ok(meta) = std::fs::metadata(part) {
            for n in [meta.len(), meta.mtime() as u64, meta.mtime_nsec() as u64, meta.ino()] {
                hasher.update(n.to_le_bytes());
            }
        }
        hasher.update([0]);
    }
    format!("{kind}:{}", hex::encode(&hasher.finalize()[..16]))
}

/// Which backend runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// A fresh microVM per job (the default; KVM or TCG).
    #[default]
    Microvm,
    /// crun on the host in fresh namespaces: fast without KVM, but the host kernel is shared
    /// (weaker isolation). Opt-in, for hosts whose users are trusted.
    Sandbox,
}

/// The backend chosen, ready for a pool.
pub struct ChosenBackend {
    pub backend: Arc<dyn Backend>,
    /// `kvm`, `tcg` or `sandbox`.
    pub name: String,
    /// Why: the accelerator probe's verdict, or the sandbox's warning.
    pub reason: String,
    /// Whether the backend's parts are present.
    pub ready: bool,
    /// The VM configuration, for the microVM backend.
    pub vm: Option<VmConfig>,
    /// The backend kind and its parts, for cache keys: `microvm:` with the kernel and the
    /// initramfs (guest init and crun), or `sandbox:` with the host's crun.
    pub identity: String,
    /// The files it needs, checked again by `/readyz`.
    pub parts: Vec<PathBuf>,
}

impl std::fmt::Debug for ChosenBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChosenBackend")
            .field("name", &self.name)
            .field("ready", &self.ready)
            .finish()
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExecutorArgs {
    /// What runs jobs: microvm (default) or sandbox (no VM: weaker isolation, opt-in).
    #[arg(long, env = "PE_BACKEND", value_enum, default_value_t = BackendChoice::Microvm, global = true)]
    pub backend: BackendChoice,
    /// Where the guest kernel, initramfs and images are built and kept
    /// [default: ~/.cache/program-explorer].
    #[arg(long, env = "PE_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Accelerator: auto (probe KVM, else TCG), kvm or tcg.
    #[arg(long, env = "PE_ACCEL", default_value = "auto", global = true)]
    pub accel: AccelChoice,
    /// QEMU binary.
    #[arg(long, env = "PE_QEMU", default_value = "/usr/bin/qemu-system-x86_64", global = true)]
    pub qemu: PathBuf,
    /// Firmware (qboot, from qemu-system-data).
    #[arg(long, env = "PE_BIOS", default_value = "/usr/share/qemu/qboot.rom", global = true)]
    pub bios: PathBuf,
    /// Guest kernel [default: CACHE_DIR/vmlinux].
    #[arg(long, env = "PE_KERNEL", global = true)]
    pub kernel: Option<PathBuf>,
    /// Guest initramfs [default: CACHE_DIR/initramfs.cpio].
    #[arg(long, env = "PE_INITRAMFS", global = true)]
    pub initramfs: Option<PathBuf>,
    /// Extra seconds a VM may take beyond the job's time limit (boot, setup, collection) before
    /// the host kills it.
    #[arg(long, env = "PE_VM_MARGIN_SECS", default_value_t = 20, global = true)]
    pub vm_margin_secs: u64,
    /// Where each job's temporary directory is made [default: CACHE_DIR/work].
    #[arg(long, env = "PE_WORK_DIR", global = true)]
    pub work_dir: Option<PathBuf>,
    /// Keep each guest's console output in the work directory (debugging).
    #[arg(long, env = "PE_CONSOLE_LOG", global = true)]
    pub console_log: bool,
    /// The user QEMU switches to once it has opened its files, when `pe` runs as root: `auto`
    /// (`pe-vm`, made by scripts/setup.sh, else `nobody`), a user name, or `root` to keep root.
    #[arg(long, env = "PE_QEMU_USER", default_value = "auto", global = true)]
    pub qemu_user: String,
}

impl ExecutorArgs {
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    pub fn images(&self) -> ImageStore {
        ImageStore::new(self.cache_dir().join("images"))
    }

    /// The VM configuration with a placeholder accelerator (TCG) until [`Self::probe`] runs.
    pub fn vm_config(&self) -> std::io::Result<VmConfig> {
        let cache = self.cache_dir();
        let work_dir = self.work_dir.clone().unwrap_or_else(|| cache.join("work"));
        std::fs::create_dir_all(&work_dir)?;
        Ok(VmConfig {
            qemu: self.qemu.clone(),
            bios: self.bios.clone(),
            kernel: self.kernel.clone().unwrap_or_else(|| cache.join("vmlinux")),
            initramfs: self.initramfs.clone().unwrap_or_else(|| cache.join("initramfs.cpio")),
            work_dir,
            accel: Accel::tcg(),
            margin: Duration::from_secs(self.vm_margin_secs),
            console_log: self.console_log,
            run_as: self.qemu_users()?,
            cgroups: if executor::running_as_root() { Cgroups::detect() } else { None },
        })
    }

    /// The unprivileged uids for QEMU, if `pe` runs as root and one is wanted: the user's
    /// subordinate uid range in /etc/subuid (a uid of its own per QEMU; `scripts/setup.sh`
    /// reserves one for `pe-vm`), else the user's own uid, shared.
    pub fn qemu_users(&self) -> std::io::Result<Option<Arc<QemuUsers>>> {
        if !executor::running_as_root() {
            return Ok(None);
        }
        let not_found = |name: &str| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("--qemu-user {name}: no such user in /etc/passwd"),
            )
        };
        let user = match self.qemu_user.as_str() {
            "root" => return Ok(None),
            "auto" => QemuUser::lookup("pe-vm").or_else(|| QemuUser::lookup("nobody")).ok_or_else(
                || {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "--qemu-user auto: neither pe-vm nor nobody exists, and QEMU will not run \
                     as root unasked; run scripts/setup.sh (it adds pe-vm), name a user with \
                     --qemu-user USER, or pass --qemu-user root to keep QEMU as root",
                    )
                },
            )?,
            name => QemuUser::lookup(name).ok_or_else(|| not_found(name))?,
        };
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        Ok(Some(match QemuUsers::subordinate_range(&subuid, &user.name) {
            Some((first, count)) => QemuUsers::range(&user.name, first, count),
            None => QemuUsers::shared(&user.name, user.uid, user.gid),
        }))
    }

    /// Chooses the accelerator (cached per host boot) and returns the final VM configuration.
    pub async fn probe(&self, mut config: VmConfig) -> (VmConfig, AccelReport) {
        let cache = self.cache_dir().join("accel-probe.json");
        let report = probe::probe(&config, self.accel, Some(&cache)).await;
        config.accel = report.accel;
        (config, report)
    }

    /// Builds the configured backend: for a microVM, probes the accelerator first.
    pub async fn choose_backend(&self) -> std::io::Result<ChosenBackend> {
        let config = self.vm_config()?;
        match self.backend {
            BackendChoice::Sandbox => Ok(ChosenBackend {
                backend: Arc::new(Sandbox {
                    config: SandboxConfig {
                        crun: SANDBOX_CRUN.into(),
                        work_dir: config.work_dir.clone(),
                    },
                }),
                name: "sandbox".into(),
                reason:
                    "namespace sandbox chosen by configuration: weaker isolation than a microVM \
                         (the host kernel is shared)"
                        .into(),
                ready: std::path::Path::new("/usr/bin/crun").is_file(),
                vm: None,
                identity: identity("sandbox", &[Path::new(SANDBOX_CRUN)]),
                parts: vec![SANDBOX_CRUN.into()],
            }),
            BackendChoice::Microvm => {
                let ready =
                    config.kernel.is_file() && config.initramfs.is_file() && config.qemu.is_file();
                let (config, report) = self.probe(config).await;
                Ok(ChosenBackend {
                    identity: identity("microvm", &[&config.kernel, &config.initramfs]),
                    parts: vec![
                        config.kernel.clone(),
                        config.initramfs.clone(),
                        config.qemu.clone(),
                    ],
                    backend: Arc::new(MicroVm { config: config.clone() }),
                    name: report.accel.to_string(),
                    reason: report.reason,
                    ready,
                    vm: Some(config),
                })
            }
        }
    }
}
