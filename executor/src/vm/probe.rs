//! The accelerator probe. Having `/dev/kvm` is not enough: a nested hypervisor such as PVM opens
//! it but cannot run an unmodified Linux guest. So [`probe`] boots the real kernel and init on
//! KVM with a short deadline and falls back to TCG if the guest does not reach init in time.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use shared::error::chain;

use super::VmConfig;
use super::accel::{Accel, AccelChoice, AccelReport};

/// QEMU's exit status when the probe guest reached init (see the guest's `sys::PROBE_EXIT`).
const PROBE_EXIT_STATUS: i32 = (0x2a << 1) | 1;

/// How long a guest may take to reach init on KVM before KVM is judged unusable. A working KVM
/// host boots this kernel in about 0.1 s.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// Chooses the accelerator. With `Auto`, boots the guest on KVM once (the result is cached in
/// `cache` for this host boot, kernel and initramfs, so only the first start pays for it).
pub async fn probe(config: &VmConfig, choice: AccelChoice, cache: Option<&Path>) -> AccelReport {
    let tcg = |reason: String| AccelReport { accel: Accel::tcg(), reason };
    match choice {
        AccelChoice::Tcg => return tcg("TCG forced by configuration".into()),
        AccelChoice::Kvm => {
            return AccelReport { accel: Accel::Kvm, reason: "KVM forced by configuration".into() };
        }
        AccelChoice::Auto => {}
    }
    if let Err(err) = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return tcg(format!("/dev/kvm is not usable ({err}): using TCG"));
    }
    if !config.kernel.is_file() || !config.initramfs.is_file() {
        // Nothing to probe with (and nothing to cache): a run will fail clearly anyway.
        return tcg(
            "the guest kernel or initramfs is missing, so KVM was not probed: using TCG".into()
        );
    }
    let key = probe_key(config);
    if let Some(cached) = cache.and_then(|p| read_cached(p, &key)) {
        return cached;
    }
    let report = match boot_probe(config).await {
        Ok(took) => AccelReport {
            accel: Accel::Kvm,
            reason: format!("a probe guest reached init on KVM in {} ms", took.as_millis()),
        },
        Err(why) => tcg(format!("KVM probe failed ({}): using TCG", chain(&why))),
    };
    if let Some(path) = cache {
        let entry = serde_json::json!({"key": key, "report": report});
        let _ = fs::write(path, entry.to_string());
    }
    report
}

fn probe_key(config: &VmConfig) -> String {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let stamp = |p: &Path| {
        fs::metadata(p).map(|m| format!("{}:{:?}", m.len(), m.modified().ok())).unwrap_or_default()
    };
    format!("{}|{}|{}", boot_id.trim(), stamp(&config.kernel), stamp(&config.initramfs))
}

fn read_cached(path: &Path, key: &str) -> Option<AccelReport> {
    let value: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
    if value.get("key")?.as_str()? != key {
        return None;
    }
    let mut report: AccelReport = serde_json::from_value(value.get("report")?.clone()).ok()?;
    report.reason.push_str(" (cached probe)");
    Some(report)
}

/// Why the KVM probe guest did not reach init.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot prepare the probe's disk")]
    Disk(#[source] std::io::Error),
    #[error("cannot prepare QEMU")]
    Prepare(#[source] std::io::Error),
    #[error("cannot start QEMU")]
    Spawn(#[source] std::io::Error),
    #[error("cannot confine QEMU")]
    Confine(#[source] std::io::Error),
    #[error("cannot wait for QEMU")]
    Wait(#[source] std::io::Error),
    #[error("QEMU exited with {0}")]
    Exited(std::process::ExitStatus),
    #[error("the guest did not reach init within {} s", PROBE_DEADLINE.as_secs())]
    Deadline,
}

/// Boots the init in probe mode (it powers off as soon as it runs) on KVM.
async fn boot_probe(config: &VmConfig) -> Result<Duration, ProbeError> {
    let dir = crate::workdir::create(&config.work_dir, "probe").map_err(ProbeError::Disk)?;
    let disk = dir.path().join("empty");
    fs::write(&disk, vec![0u8; 4096]).map_err(ProbeError::Disk)?;
    let kvm = VmConfig { accel: Accel::Kvm, ..config.clone() };
    let (mut cmd, confinement) =
        kvm.command(256, &disk, true, &disk, "pe.probe", None).map_err(ProbeError::Prepare)?;
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(ProbeError::Spawn)?;
    confinement.attach(child.id()).map_err(ProbeError::Confine)?;
    match tokio::time::timeout(PROBE_DEADLINE, child.wait()).await {
        // The probe init writes 0x2a to the debug-exit port: QEMU exits with (0x2a << 1) | 1.
        Ok(Ok(status)) if status.code() == Some(PROBE_EXIT_STATUS) => Ok(started.elapsed()),
        Ok(Ok(status)) => Err(ProbeError::Exited(status)),
        Ok(Err(e)) => Err(ProbeError::Wait(e)),
        Err(_) => {
            let _ = child.kill().await;
            Err(ProbeError::Deadline)
        }
    }
}
