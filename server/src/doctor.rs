//! `pe doctor`: what this host can do and what is missing, with the accelerator choice and why.

use std::path::Path;
use std::process::ExitCode;

use crate::executor_config::ExecutorArgs;

pub async fn run(exec: &ExecutorArgs) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut check = |label: &str, good: bool, detail: String| {
        ok &= good;
        println!("{} {label:<12} {detail}", if good { "ok  " } else { "FAIL" });
    };
    let config = exec.vm_config()?;
    let qemu = std::process::Command::new(&config.qemu).arg("--version").output();
    match qemu {
        Ok(out) if out.status.success() => {
            let version =
                String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned();
            check("qemu", true, format!("{} ({version})", config.qemu.display()));
        }
        _ => check(
            "qemu",
            false,
            format!("{} does not run: run scripts/setup.sh", config.qemu.display()),
        ),
    }
    for (label, path) in
        [("firmware", &config.bios), ("kernel", &config.kernel), ("initramfs", &config.initramfs)]
    {
        check(label, path.is_file(), describe_file(path));
    }
    let kvm = Path::new("/dev/kvm");
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    println!(
        "info /dev/kvm     {}{}",
        if kvm.exists() { "present" } else { "absent" },
        if pvm { " (nested PVM: cannot run unmodified Linux guests)" } else { "" }
    );
    let (_, report) = exec.probe(config.clone()).await;
    check("accelerator", true, format!("{} — {}", report.accel, report.reason));
    match exec.backend {
        crate::executor_config::BackendChoice::Microvm => {
            println!(
                "info backend     microvm: a fresh VM per job (no network device, read-only image, crun inside)"
            );
        }
        crate::executor_config::BackendChoice::Sandbox => {
            println!(
                "WARN backend     sandbox: crun on the host in fresh namespaces; WEAKER ISOLATION than a \
                 microVM (the host kernel is shared); opt-in via --backend sandbox"
            );
        }
    }
    let images = exec.images();
    let list = images.list();
    check(
        "images",
        !list.is_empty(),
        format!("{} built in {}", list.len(), images.root().display()),
    );
    for image in list {
        println!("     {:<12} {} {:>8} KiB", image.id, image.digest, image.size / 1024);
    }
    println!("info work dir    {}", config.work_dir.display());
    match &config.run_as {
        Some(users) => println!(
            "info QEMU user   {}: QEMU drops to it once its files are open",
            users.describe
        ),
        None => println!("info QEMU user   unchanged (pe is not root, or --qemu-user root)"),
    }
    match &config.cgroups {
        Some(cgroups) => println!(
            "info QEMU cgroup one per QEMU (cgroup {}): memory, tasks and CPU weight capped",
            cgroups.version()
        ),
        None => {
            println!("info QEMU cgroup none (no writable cgroup hierarchy with memory, pids, cpu)")
        }
    }
    let data_dir = std::env::var_os("PE_DATA_DIR")
        .map_or_else(crate::serve::default_data_dir, std::path::PathBuf::from);
    if data_dir.join("pe.sqlite3").is_file() {
        let cache_bytes: u64 = std::fs::read_dir(data_dir.join("cache"))
            .map(|d| {
                d.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
            })
            .unwrap_or(0);
        println!(
            "info data dir    {} (database present, result cache {} KiB)",
            data_dir.display(),
            cache_bytes / 1024
        );
    } else {
        println!("info data dir    {} (not created yet: pe serve creates it)", data_dir.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn describe_file(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => format!("{} ({} KiB)", path.display(), meta.len() / 1024),
        Err(_) => format!("{} is missing: run scripts/setup.sh", path.display()),
    }
}
