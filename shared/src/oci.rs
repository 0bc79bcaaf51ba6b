//! The OCI runtime configuration (`config.json`) handed to crun, the same for every backend:
//! the guest init inside the microVM and the opt-in host sandbox write it from here, so a job
//! sees the same container either way.
//!
//! Read-only root; writable /input, /output and /tmp bound from a scratch directory; an
//! unprivileged user with no capabilities and `noNewPrivileges`; fresh pid, network (empty:
//! loopback only), ipc, uts, mount and cgroup namespaces; masked and read-only /proc paths.

use serde_json::{Value, json};

/// What varies between jobs and backends.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub argv: &'a [String],
    /// `KEY=value`.
    pub env: &'a [String],
    pub cwd: &'a str,
    /// The container's root filesystem (mounted read-only by crun).
    pub root: &'a str,
    /// Directory holding `input/`, `output/` and `tmp/`, bound into the container.
    pub scratch: &'a str,
    pub uid: u32,
    pub gid: u32,
    /// cgroup limits, where a cgroup v2 hierarchy with these controllers is available.
    pub cgroup: Option<CgroupLimits<'a>>,
    /// Extra rlimits `(name, value)` set hard and soft, e.g. where cgroups are not available.
    pub rlimits: &'a [(&'a str, u64)],
}

#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits<'a> {
    /// Path of the job's cgroup, e.g. `/pe-job`.
    pub path: &'a str,
    pub pids_max: u32,
    pub memory_bytes: u64,
}

/// System calls a job has no use for, refused with EPERM: kernel keyrings, BPF, perf events,
/// joining namespaces, userfaultfd, io_uring, kexec and modules. Each is kernel code a job could
/// reach otherwise (the guest kernel has keys, BPF and perf events for crun's own use).
const DENIED_SYSCALLS: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "bpf",
    "perf_event_open",
    "setns",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
];

/// `CLONE_NEWUSER` from <linux/sched.h>.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The container's seccomp filter: everything else is allowed; `DENIED_SYSCALLS` fail with
/// EPERM, and so does making a user namespace (which would give the job every capability over
/// namespaces of its own, and the kernel code behind them). `clone3` passes its flags in memory
/// a filter cannot read, so it reports ENOSYS and C libraries fall back to `clone`, whose flags
/// it can.
fn seccomp() -> Value {
    const EPERM: u32 = 1;
    const ENOSYS: u32 = 38;
    let newuser = json!([{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                           "op": "SCMP_CMP_MASKED_EQ"}]);
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {"names": ["unshare", "clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
             "args": newuser},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}
        ]
    })
}

/// The `config.json` for `spec`.
pub fn runtime_config(spec: &Spec<'_>) -> Value {
    let bind = |dest: &str, dir: &str| {
        json!({"destination": dest, "type": "bind", "source": format!("{}/{dir}", spec.scratch),
               "options": ["rbind", "rw", "nosuid", "nodev"]})
    };
    let no_caps: [&str; 0] = [];
    let mut rlimits = vec![
        json!({"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}),
        json!({"type": "RLIMIT_CORE", "hard": 0, "soft": 0}),
    ];
    rlimits
        .extend(spec.rlimits.iter().map(|(name, v)| json!({"type": name, "hard": v, "soft": v})));
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    let mut linux = json!({
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        "seccomp": seccomp()
    });
    if let Some(cgroup) = spec.cgroup {
        namespaces.push(json!({"type": "cgroup"}));
        linux["cgroupsPath"] = json!(cgroup.path);
        linux["resources"] = json!({
            "pids": {"limit": cgroup.pids_max},
            "memory": {"limit": cgroup.memory_bytes}
        });
    }
    linux["namespaces"] = Value::Array(namespaces);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": spec.argv,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {"bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
                             "permitted": no_caps, "ambient": no_caps},
            "rlimits": rlimits,
            "noNewPrivileges": true
        },
        "root": {"path": spec.root, "readonly": true},
        "hostname": "pe",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=1m"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=64m"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            bind("/input", "input"),
            bind("/output", "output"),
            bind("/tmp", "tmp"),
        ],
        "linux": linux
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_is_locked_down() {
        let argv = vec!["sh".to_owned()];
        let spec = Spec {
            argv: &argv,
            env: &[],
            cwd: "/input",
            root: "/r",
            scratch: "/s",
            uid: 1000,
            gid: 1000,
            cgroup: Some(CgroupLimits { path: "/pe-job", pids_max: 64, memory_bytes: 1 << 20 }),
            rlimits: &[],
        };
        let c = runtime_config(&spec);
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["process"]["user"]["uid"], 1000);
        assert_eq!(c["process"]["capabilities"]["bounding"], json!([]));
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"cgroup"));
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 64);
        assert_eq!(c["mounts"][4]["source"], "/s/input");
        let rules = c["linux"]["seccomp"]["syscalls"].as_array().unwrap();
        assert!(rules[0]["names"].as_array().unwrap().contains(&json!("bpf")));
        assert_eq!(rules[1]["args"][0]["value"], 0x1000_0000, "CLONE_NEWUSER");
    }
}
