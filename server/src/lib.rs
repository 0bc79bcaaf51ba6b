//! The `pe` command and the HTTP server.
//!
//! 1. `main.rs` parses the command line ([`cli`]) and dispatches.
//! 2. [`archive`] packs, unpacks and lists cpio archives with the shared codec.
//! 3. The HTTP server (issue 5), `pe run` (issue 3) and the image builder (issue 4) follow.
#![forbid(unsafe_code)]

pub mod archive;
pub mod cli;
