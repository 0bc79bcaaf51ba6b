//! The microVM: where its parts are ([`VmConfig`]) and the QEMU command line that starts one.
//!
//! 1. [`accel`]: KVM or TCG; [`probe`] chooses once at start-up by booting a probe guest.
//! 2. [`VmConfig::command`]: QEMU's microvm machine with no network device, the image and the
//!    I/O disk as virtio-blk devices, QEMU's own seccomp filter, its uid and cgroup.
//! 3. [`cold`]: one job in a VM booted for it, and reading the guest's answer off the I/O disk
//!    (the warm paths in [`crate::warm`] reuse that reader).

pub mod accel;
pub mod cold;
pub mod probe;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use shared::guest::{IMAGE_DISK_SERIAL, IO_DISK_SERIAL};
use tokio::process::Command;

use crate::confine::{Cgroups, Confinement, QemuUsers};

use accel::Accel;

/// Where the VM's parts are and how to start it.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub qemu: PathBuf,
    /// qboot, the minimal firmware (from qemu-system-data).
    pub bios: PathBuf,
    /// Uncompressed kernel (`vmlinux`), booted through PVH.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Where job directories are created.
    pub work_dir: PathBuf,
    pub accel: Accel,
    /// Time allowed on top of the job's own limit for boot, setup and collecting outputs,
    /// before the host kills the VM.
    pub margin: Duration,
    /// Keep the guest's console in `<work_dir>/console-<job>.log` (debugging).
    pub console_log: bool,
    /// The unprivileged uids QEMUs switch to once they have opened their files (`-runas`),
    /// when the executor runs as root.
    pub run_as: Option<Arc<QemuUsers>>,
    /// Where each QEMU's cgroup is made, when the host offers one.
    pub cgroups: Option<Cgroups>,
}

/// A host user for QEMU processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl QemuUser {
    /// Looks `name` up in /etc/passwd.
    pub fn lookup(name: &str) -> Option<QemuUser> {
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != name {
                return None;
            }
            Some(QemuUser {
                name: name.to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    }
}

impl VmConfig {
    /// The QEMU command line for a VM with the given disks and kernel arguments, and the uid
    /// and cgroup it is confined to (call [`Confinement::attach`] once it is spawned; keep it as
    /// long as the QEMU runs). Opens the I/O disk: QEMU gets it as inherited descriptors (an fd
    /// set), never by path, so it can reopen it after switching to its unprivileged user.
    pub fn command(
        &self,
        memory_mib: u32,
        image: &Path,
        image_readonly: bool,
        io: &Path,
        extra_cmdline: &str,
        console: Option<&Path>,
    ) -> std::io::Result<(Command, Confinement)> {
        let confinement = Confinement {
            lease: self.run_as.as_ref().map(|users| users.lease()).transpose()?,
            cgroup: self.cgroups.as_ref().map(|c| c.create(memory_mib)).transpose()?,
        };
        // panic=-1 reboot=t with -no-reboot: a guest that crashes ends the VM at once.
        let mut cmdline = String::from("quiet panic=-1 reboot=t rdinit=/init random.trust_cpu=on");
        if let Some(khz) = self.accel.tsc_khz() {
            // Under TCG the kernel cannot calibrate the TSC quickly and boot hangs without it.
            // TCG has no TSC-deadline timer, so the local APIC timer is only usable after a
            // 250 ms calibration against the PIT: tick from the PIT instead. The TSC stays the
            // clock (`tsc=reliable`): TCG's follows the host's, and the watchdog, comparing it
            // with jiffies that lag whenever the vCPU is busy translating, would otherwise
            // switch the guest to a jiffies clock (4 ms steps, and no vDSO clock_gettime).
            cmdline.push_str(&format!(" tsc_early_khz={khz} nolapic_timer tsc=reliable"));
        }
        if console.is_some() {
            cmdline.push_str(" console=hvc0");
        }
        if !extra_cmdline.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(extra_cmdline);
        }
        let mut cmd = Command::new(&self.qemu);
        // The PIT and PIC stay on: without them the guest has no working timer interrupt under
        // TCG (no preemption, sleeps never end).
        cmd.args(["-M", "microvm,acpi=off,x-option-roms=off,pit=on,pic=on,isa-serial=off,rtc=on"]);
        cmd.args(self.accel.qemu_args());
        cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-serial", "none", "-no-reboot"]);
        // QEMU's own seccomp filter: an escape into the QEMU process cannot spawn programs,
        // gain privileges or use obsolete system calls.
        // With `-runas`, QEMU's own switch to the user needs set*id, so the filter allows them;
        // once it has switched, they cannot raise privileges again (no capabilities are left).
        let privileges = if confinement.lease.is_some() { "allow" } else { "deny" };
        cmd.args([
            "-sandbox",
            &format!(
                "on,obsolete=deny,elevateprivileges={privileges},spawn=deny,resourcecontrol=deny"
            ),
        ]);
        if let Some(lease) = &confinement.lease {
            cmd.args(["-runas", &format!("{}:{}", lease.uid, lease.gid)]);
        }
        cmd.arg("-bios").arg(&self.bios);
        cmd.args(["-m", &memory_mib.to_string(), "-smp", "1"]);
        cmd.arg("-kernel").arg(&self.kernel);
        cmd.arg("-initrd").arg(&self.initramfs);
        cmd.args(["-append", &cmdline]);
        let ro = if image_readonly { ",readonly=on" } else { "" };
        cmd.arg("-drive").arg(drive_arg("image", image, ro));
        cmd.args(["-device", &format!("virtio-blk-device,drive=image,serial={IMAGE_DISK_SERIAL}")]);
        // Fd set 1: the I/O disk read-write and read-only (QEMU dups the one whose access mode
        // matches each open of /dev/fdset/1).
        let rw = fs::OpenOptions::new().read(true).write(true).open(io)?;
        let ro = File::open(io)?;
        cmd.fd_mappings(vec![
            FdMapping { parent_fd: rw.into(), child_fd: IO_FD_RW },
            FdMapping { parent_fd: ro.into(), child_fd: IO_FD_RO },
        ])
        .map_err(std::io::Error::other)?;
        for fd in [IO_FD_RW, IO_FD_RO] {
            cmd.args(["-add-fd", &format!("fd={fd},set=1,opaque=io")]);
        }
        // The I/O disk is this VM's alone: no image locking (a restored clone reopens it while
        // its own first open still holds the lock, and QEMU would warn on every clone).
        cmd.arg("-drive").arg(drive_arg("io", Path::new("/dev/fdset/1"), ",file.locking=off"));
        cmd.args(["-device", &format!("virtio-blk-device,drive=io,serial={IO_DISK_SERIAL}")]);
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
        if let Some(log) = console {
            cmd.args(["-device", "virtio-serial-device"]);
            cmd.arg("-chardev").arg(format!("file,id=console,path={}", log.display()));
            cmd.args(["-device", "virtconsole,chardev=console"]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        Ok((cmd, confinement))
    }
}

/// Adds the control port: a virtio-serial port named `pe.ctl` backed by a Unix socket QEMU
/// listens on at `socket` (the host connects once QEMU has started). `with_bus` adds the
/// virtio-serial bus too (leave it out when the console already added one).
pub fn add_control_port(cmd: &mut Command, socket: &Path, with_bus: bool) {
    if with_bus {
        cmd.args(["-device", "virtio-serial-device"]);
    }
    let socket = socket.display().to_string().replace(',', ",,");
    cmd.arg("-chardev").arg(format!("socket,id=ctl,path={socket},server=on,wait=off"));
    cmd.args(["-device", "virtserialport,chardev=ctl,name=pe.ctl"]);
}

/// The descriptors QEMU inherits for the I/O disk.
const IO_FD_RW: i32 = 3;
const IO_FD_RO: i32 = 4;

fn drive_arg(id: &str, path: &Path, extra: &str) -> std::ffi::OsString {
    // QEMU option values escape ',' by doubling it.
    let path = path.display().to_string().replace(',', ",,");
    // werror/rerror=report: a write that fails on the host (a full disk) is an I/O error in the
    // guest, which then ends; QEMU's default would pause the VM until the host deadline.
    format!(
        "id={id},file={path},format=raw,if=none,cache=unsafe,werror=report,rerror=report{extra}"
    )
    .into()
}
