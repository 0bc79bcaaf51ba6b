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
    /// Which seccomp filter the container gets.
    pub seccomp: Seccomp,
    /// A program bound read-only at [`WAITER_PATH`] in the container: the guest's pre-made
    /// container runs it first, and it execs the job's program (`guest/src/premade.rs`).
    pub waiter: Option<&'a str>,
}

/// Where a pre-made container's waiting program is, inside the container.
pub const WAITER_PATH: &str = "/.pe-wait";

/// The container's seccomp filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    /// Everything but [`DENIED_SYSCALLS`] and user namespaces: inside the microVM, whose guest
    /// kernel is the job's alone.
    Denylist,
    /// Only [`ALLOWED_SYSCALLS`] (modelled on Docker's default profile), for the host sandbox,
    /// which shares the host's kernel: everything else is refused.
    Allowlist,
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
/// Every namespace flag of `clone` (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET).
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

/// The system calls the sandbox backend's filter allows: what programs in the catalog's images
/// use, modelled on Docker's default profile for x86-64 without the calls Docker too allows only
/// with extra capabilities. `clone` is allowed without namespace flags (a rule of its own); names
/// a libseccomp does not know are skipped by crun.
const ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socket",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// The container's seccomp filter.
///
/// Both kinds refuse `DENIED_SYSCALLS` and making a user namespace with EPERM (a user namespace
/// would give the job every capability over namespaces of its own, and the kernel code behind
/// them). `clone3` passes its flags in memory a filter cannot read, so it reports ENOSYS and C
/// libraries fall back to `clone`, whose flags it can.
///
/// The denylist allows everything else. The allowlist allows [`ALLOWED_SYSCALLS`] and `clone`
/// without namespace flags; anything else reports ENOSYS, which C libraries treat as "not on
/// this kernel" and work around where they can.
fn seccomp(kind: Seccomp) -> Value {
    const EPERM: u32 = 1;
    const ENOSYS: u32 = 38;
    let newuser = json!([{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                           "op": "SCMP_CMP_MASKED_EQ"}]);
    let denied = json!({"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM});
    let clone3 = json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS});
    let arches = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    match kind {
        Seccomp::Denylist => json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": arches,
            "syscalls": [
                denied,
                {"names": ["unshare", "clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                 "args": newuser},
                clone3
            ]
        }),
        Seccomp::Allowlist => json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": ENOSYS,
            "architectures": arches,
            "syscalls": [
                {"names": ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
                denied,
                clone3
            ]
        }),
    }
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
        "seccomp": seccomp(spec.seccomp)
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
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=1m"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=64m"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        bind("/input", "input"),
        bind("/output", "output"),
        bind("/tmp", "tmp"),
    ];
    if let Some(waiter) = spec.waiter {
        mounts.push(json!({"destination": WAITER_PATH, "type": "bind", "source": waiter,
                           "options": ["bind", "ro", "nosuid", "nodev"]}));
    }
    if spec.cgroup.is_some() {
        // The job's own cgroup (its namespace's root), read-only: runtimes size themselves from
        // its limits (memory.max, pids.max), and a job can see what stopped it (pids.events).
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}));
    }
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
        "mounts": mounts,
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
            seccomp: Seccomp::Denylist,
            waiter: None,
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
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn the_allowlist_refuses_what_it_does_not_name() {
        let argv = vec!["sh".to_owned()];
        let spec = Spec {
            argv: &argv,
            env: &[],
            cwd: "/",
            root: "/r",
            scratch: "/s",
            uid: 1,
            gid: 1,
            cgroup: None,
            rlimits: &[],
            seccomp: Seccomp::Allowlist,
            waiter: None,
        };
        let filter = &runtime_config(&spec)["linux"]["seccomp"];
        assert_eq!(filter["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = filter["syscalls"][0]["names"].as_array().unwrap();
        for needed in ["read", "write", "execve", "mmap", "futex", "wait4", "openat"] {
            assert!(allowed.contains(&json!(needed)), "{needed}");
        }
        for dangerous in DENIED_SYSCALLS.iter().chain(&[
            "mount",
            "ptrace",
            "unshare",
            "clone",
            "pivot_root",
            "chroot",
            "reboot",
            "swapon",
            "settimeofday",
            "open_by_handle_at",
        ]) {
            assert!(!allowed.contains(&json!(dangerous)), "{dangerous} is allowed");
        }
        let mut sorted: Vec<&str> = ALLOWED_SYSCALLS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALLOWED_SYSCALLS.len(), "a name is listed twice");
    }
}
