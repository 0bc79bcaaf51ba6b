//! Which accelerator QEMU uses: hardware KVM where a guest actually runs on it, TCG (software
//! emulation) elsewhere. [`super::probe`] chooses one at start-up.

use std::fmt;
use std::fs;

use serde::{Deserialize, Serialize};

/// The accelerator a VM runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Accel {
    Kvm,
    /// Software emulation. The guest needs the host's TSC frequency on its command line.
    Tcg {
        tsc_khz: u64,
    },
}

impl Accel {
    /// TCG with the host's TSC frequency.
    pub fn tcg() -> Accel {
        Accel::Tcg { tsc_khz: host_tsc_khz() }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg { .. } => "tcg",
        }
    }

    pub fn qemu_args(&self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg { .. } => &["-accel", "tcg"],
        }
    }

    /// `tsc_early_khz` for the guest command line, under TCG.
    pub fn tsc_khz(&self) -> Option<u64> {
        match self {
            Accel::Kvm => None,
            Accel::Tcg { tsc_khz } => Some(*tsc_khz),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// Probe KVM, fall back to TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(format!("unknown accelerator {other:?}: use auto, kvm or tcg")),
        }
    }
}

/// The accelerator chosen and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelReport {
    pub accel: Accel,
    pub reason: String,
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo.
pub fn host_tsc_khz() -> u64 {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|mhz| mhz.trim().parse::<f64>().ok())
        })
        .map_or(2_000_000, |mhz| (mhz * 1000.0) as u64)
}
