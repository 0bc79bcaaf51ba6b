//! The control port of a pre-booted ("warm") VM: a virtio-serial port named `pe.ctl`, a Unix
//! socket on the host. The guest boots, mounts its image, says `ready`, and blocks until the
//! host has written the request to the I/O disk and says `go <seed>`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{SetupError, Stage};

/// virtio-serial port name the host gives the control channel.
pub const PORT_NAME: &str = "pe.ctl";

/// Kept open for the VM's life: closing it would tell the host the guest went away.
static PORT: OnceLock<File> = OnceLock::new();

fn find_port() -> Option<PathBuf> {
    for entry in fs::read_dir("/sys/class/virtio-ports").ok()?.filter_map(Result::ok) {
        let name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Some(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    None
}

/// Says `ready`, waits for `go <seed>`, returns the seed (hex).
pub fn wait_for_go() -> Result<String, SetupError> {
    const STAGE: &str = "wait for the host";
    // The port appears once its driver has probed it, which may be a little after init starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = loop {
        if let Some(path) = find_port().filter(|p| p.exists()) {
            break path;
        }
        if Instant::now() > deadline {
            return Err(SetupError::new(STAGE, format!("no virtio port named {PORT_NAME}")));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let port = OpenOptions::new().read(true).write(true).open(&path).stage(STAGE)?;
    let port = PORT.get_or_init(|| port);
    (&*port).write_all(b"ready\n").stage(STAGE)?;
    let mut line = String::new();
    BufReader::new(port).read_line(&mut line).stage(STAGE)?;
    match line.trim().strip_prefix("go") {
        Some(seed) => Ok(seed.trim().to_owned()),
        None => Err(SetupError::new(STAGE, format!("unexpected message {:?}", line.trim()))),
    }
}
