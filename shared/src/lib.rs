//! Everything that crosses a boundary in Program Explorer, and nothing else.
//!
//! A job flows browser -> server -> executor -> guest and back. Each hop speaks one of the
//! formats defined here, so both ends compile the same code (the browser as wasm, the guest as a
//! static musl binary):
//!
//! 1. [`api::v1`]: the HTTP API's request and result types (`RunRequest`, `RunResult`,
//!    `RunStatus`, the JSON error body).
//! 2. [`framing`]: `<u32le header_len><JSON header><archive>`, the body of
//!    `application/x-pe-archive` requests and responses. The header comes first so a server can
//!    validate it (and answer from its cache) before the archive has arrived.
//! 3. [`cpio`]: the archive inside a frame, cpio "newc". Every decoder (browser, server, guest)
//!    enforces the same rules: relative paths only, no `..`, no duplicates, no device nodes or
//!    links, bounded entry count, total size and path length.
//! 4. [`guest`]: the host <-> guest protocol written to the VM's I/O disk. Deliberately separate
//!    types from the API: the server converts between them in one place.
//! 5. [`limits`]: the default and maximum sizes, counts and times, as named constants.
//! 6. [`meta`]: container metadata (options, inputs, outputs, examples) and the one function
//!    that renders option values into a command line, for the browser and the server alike.
//! 7. [`oci`]: the OCI runtime config given to crun, shared by every backend.
//! 8. [`diagnostics`]: the errors and warnings in a run's output, with file, line and column,
//!    read as its container's metadata says (built-in formats or a regex).
//! 9. [`asm`]: the assembly view: GNU assembler output with each line's source line, filtered
//!    like Compiler Explorer (directives, unused labels, comments, library code, demangling).
//! 10. [`error::chain`]: an error and its causes in one line, the way every crate writes them.
//!
//! This crate builds for the host, `wasm32-unknown-unknown` and `x86_64-unknown-linux-musl`; it
//! has no async runtime, HTTP, browser or libc dependency.
#![forbid(unsafe_code)]

pub mod api;
pub mod asm;
pub mod cpio;
pub mod diagnostics;
pub mod error;
pub mod framing;
pub mod guest;
pub mod limits;
pub mod meta;
pub mod oci;
#[cfg(unix)]
pub mod outputs;
pub mod squashfs;
pub mod stream;
