//! `pe gc`: old cache entries, stray cache files, leftover job directories and build
//! directories (from a crash or a kill -9).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::executor_config::ExecutorArgs;
use crate::store::Store;

pub async fn run(exec: &ExecutorArgs, data_dir: &Path, days: u64) -> anyhow::Result<ExitCode> {
    if data_dir.join("pe.sqlite3").exists() {
        let store = Store::open(data_dir, u64::MAX)?;
        let removed = store.gc((days * 86_400) as i64).await?;
        println!("cache: removed {removed} entries unused for {days} days");
    }
    let config = exec.vm_config()?;
    // Job directories older than any job can live (the longest limit plus margin).
    let stale = Duration::from_secs(3600);
    let mut removed = 0;
    for dir in [config.work_dir.clone(), exec.images().root().join("tmp")] {
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        for entry in read.filter_map(Result::ok) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > stale)
                .unwrap_or(false);
            if old {
                let path = entry.path();
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if result.is_ok() {
                    removed += 1;
                }
            }
        }
    }
    println!("temporary files: removed {removed} left over from earlier jobs and builds");
    Ok(ExitCode::SUCCESS)
}
