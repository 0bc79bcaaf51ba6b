//! What `/readyz` checks, each time it is asked: the backend's files are there (kernel,
//! initramfs and QEMU, or crun), the disks of the data and work directories have room, the
//! image store can be read and holds a built image, and no snapshot template has failed. The
//! first three make the server unready; a failed template only slows its container's jobs (they
//! boot instead) and is reported.

use std::path::PathBuf;

use serde::Serialize;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct HealthChecks {
    /// Files the backend needs.
    pub parts: Vec<PathBuf>,
    /// Directories whose file systems must keep `min_free_bytes` free.
    pub disks: Vec<PathBuf>,
    pub min_free_bytes: u64,
}

/// Free bytes below which a disk is full for jobs: an I/O disk and an answer must fit.
pub const MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `part_missing`, `disk_full`, `disk_unreadable`, `image_store_unreadable`,
    /// `no_image_built`, `template_failed`.
    pub check: &'static str,
    /// What is wrong (operator-facing: /readyz is for the operator's probes).
    pub detail: String,
    /// Whether it makes the server unready.
    pub fatal: bool,
}

impl HealthChecks {
    /// The problems now.
    pub fn run(
        &self,
        images: &images::ImageStore,
        built: usize,
        failed_templates: &[String],
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut fatal =
            |check, detail: String| problems.push(Problem { check, detail, fatal: true });
        for part in &self.parts {
            if !part.is_file() {
                fatal("part_missing", format!("{} is missing", part.display()));
            }
        }
        for disk in &self.disks {
            match rustix::fs::statvfs(disk) {
                Ok(st) => {
                    let free = st.f_bavail.saturating_mul(st.f_frsize);
                    if free < self.min_free_bytes {
                        fatal("disk_full", format!("{}: {} MiB free", disk.display(), free >> 20));
                    }
                }
                Err(err) => fatal("disk_unreadable", format!("{}: {err}", disk.display())),
            }
        }
        if let Err(err) = std::fs::read_dir(images.root()) {
            fatal("image_store_unreadable", format!("{}: {err}", images.root().display()));
        } else if built == 0 {
            fatal("no_image_built", "no container's image is built".into());
        }
        problems.extend(failed_templates.iter().map(|id| Problem {
            check: "template_failed",
            detail: format!("{id}: its snapshot template failed; its jobs boot instead"),
            fatal: false,
        }));
        problems
    }
}
