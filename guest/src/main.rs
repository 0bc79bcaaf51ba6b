//! PID 1 inside the microVM. Not built yet (issue 3).

fn main() {
    eprintln!("pe-init: the guest init is not built yet");
    std::process::exit(1);
}
