//! A real `pe serve` (real microVMs) for the end-to-end tests: started on a free port with its
//! own data and work directories, its log printed when a test fails, stopped with SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub _data: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test shows what the server logged.
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self._data.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- the server's log, last lines ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        // SIGTERM first: a clean shutdown also stops the warm VMs.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(extra_env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pe"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PE_DATA_DIR", data.path())
        .env("PE_WORK_DIR", work.path())
        .env("RUST_LOG", "warn")
        .env("PE_WARM", "none")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.path().join("server.log")).unwrap());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let server = Server { child: cmd.spawn().unwrap(), port, _data: data, work };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _, _)) = http(port, "GET", "/readyz", "", "") {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pe serve did not become ready (is the busybox image built? run scripts/setup.sh)");
}

/// One request with a real HTTP client (ureq; a new connection each time, no status is an
/// error): (status, headers as `name: value` lines lower-cased, body). The connection tests
/// below use raw sockets instead, on purpose.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, String, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .max_idle_connections(0)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut response = match method {
        "GET" => agent.get(&url).call()?,
        "POST" => agent.post(&url).header("Content-Type", content_type).send(body)?,
        other => panic!("http(): {other} is not used by these tests"),
    };
    let status = response.status().as_u16();
    let headers: String = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or_default()))
        .collect::<String>()
        .to_ascii_lowercase();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_string()?;
    Ok((status, headers, body))
}

pub fn run_json(port: u16, body: &str) -> (u16, String, serde_json::Value) {
    let (status, headers, body) =
        http(port, "POST", "/api/v1/run", "application/json", body).unwrap();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// QEMU processes whose command line mentions `dir`.
pub fn qemu_pids_in(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("qemu-system") && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

pub fn wait_for_warm(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (_, _, body) = http(port, "GET", "/readyz", "", "").unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if json["warm_ready"].as_u64().unwrap_or(0) >= 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no warm VM became ready");
}
