//! The wasm entry point Trunk builds; the app lives in the library.
#![forbid(unsafe_code)]

fn main() {
    frontend::start();
}
