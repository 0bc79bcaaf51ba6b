//! Throwaway PostgreSQL and NATS servers for the cluster tests, started from the Debian
//! packages (scripts/setup.sh installs them) in temporary directories on loopback, and stopped
//! when dropped. A missing binary fails the test: these tests never skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts PostgreSQL 15's server programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn must_exist(path: &Path, package: &str) {
    assert!(
        path.exists(),
        "{} is missing: install the Debian package {package} (scripts/setup.sh does)",
        path.display()
    );
}

/// Runs `cmd` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if executor::running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster of its own, in a temporary directory.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let initdb = Path::new(PG_BIN).join("initdb");
        must_exist(&initdb, "postgresql");
        let dir = tempfile::Builder::new().prefix("pe-pg-").tempdir().unwrap();
        if executor::running_as_root() {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
            assert!(status.success(), "cannot give {} to postgres", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = as_postgres(&initdb)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "pe", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let pg = Postgres { port: free_port(), dir };
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again, after [`Postgres::stop`]), and waits until it accepts.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(&Path::new(PG_BIN).join("pg_ctl"))
            .args(["-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Stops the server at once (`-m immediate`: like a crash).
    pub fn stop(&self) {
        let _ = as_postgres(&Path::new(PG_BIN).join("pg_ctl"))
            .args(["-D"])
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn url(&self) -> String {
        format!("postgres://pe@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A nats-server with JetStream, its store in a temporary directory.
pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// nats-server from the Debian package.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

impl Nats {
    pub fn start() -> Nats {
        must_exist(Path::new(NATS_SERVER), "nats-server");
        let dir = tempfile::Builder::new().prefix("pe-nats-").tempdir().unwrap();
        let mut nats = Nats { port: free_port(), dir, child: None };
        nats.start_again();
        nats
    }

    /// Starts the server (again, after [`Nats::kill`]) on the same port and store.
    pub fn start_again(&mut self) {
        let conf = self.dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{}\nmax_payload: 8MB\njetstream {{ store_dir: {:?} }}\n",
                self.port,
                self.dir.path().join("js").display().to_string()
            ),
        )
        .unwrap();
        let child = Command::new(NATS_SERVER)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.path().join("log")).unwrap()))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `pe worker` process, killed (SIGKILL) when dropped; its log printed if a test fails.
pub struct Worker {
    pub child: Child,
    /// Its `/metrics` and `/readyz`.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Worker {
    /// Starts `pe --backend BACKEND worker` and waits until it is connected.
    pub fn start(nats: &Nats, backend: &str, extra: &[&str]) -> Worker {
        Worker::start_with_env(nats, backend, extra, &[])
    }

    /// [`Worker::start`] with more environment variables.
    pub fn start_with_env(
        nats: &Nats,
        backend: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let dir = tempfile::Builder::new().prefix("pe-worker-").tempdir().unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pe"))
            .envs(env.iter().copied())
            .args(["--backend", backend, "worker", "--nats", &nats.url(), "--slots", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("PE_WORK_DIR", dir.path())
            .env("RUST_LOG", "warn,server=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
            .spawn()
            .unwrap();
        let worker = Worker { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(super::real::http(port, "GET", "/readyz", "", ""), Ok((200, _, _))) {
            assert!(Instant::now() < deadline, "pe worker did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        worker
    }

    /// A counter or gauge of its /metrics (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        metric(self.port, name)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default();
            eprintln!("--- worker on port {}: its log ---\n{log}", self.port);
        }
        self.kill9();
    }
}

/// A sample of `/metrics` on `port`: the first line starting with `name` (with its labels),
/// 0 when there is none.
pub fn metric(port: u16, name: &str) -> f64 {
    let (_, _, text) = super::real::http(port, "GET", "/metrics", "", "").unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// NATS, PostgreSQL and `servers` servers in cluster mode (workers are started by the test).
pub struct Cluster {
    pub nats: Nats,
    pub pg: Postgres,
    pub servers: Vec<super::real::Server>,
}

impl Cluster {
    pub fn start(servers: usize) -> Cluster {
        let nats = Nats::start();
        let pg = Postgres::start();
        let servers = (0..servers)
            .map(|_| {
                super::real::start_server(&[
                    ("PE_NATS", &nats.url()),
                    ("PE_DATABASE", &pg.url()),
                    ("PE_RATE_PER_MINUTE", "0"),
                    ("RUST_LOG", "warn,server=info"),
                ])
            })
            .collect();
        Cluster { nats, pg, servers }
    }

    pub fn port(&self, n: usize) -> u16 {
        self.servers[n].port
    }
}
