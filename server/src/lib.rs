//! The `pe` command and the HTTP server.
//!
//! 1. `main.rs` parses the command line ([`cli`]) and dispatches.
//! 2. [`archive`] packs, unpacks and lists cpio archives with the shared codec.
//! 3. [`run_cmd`] runs one job in a microVM (`pe run`); [`doctor`] checks the host.
//! 4. [`convert`] is the one place executor results become API types.
//! 5. The HTTP server (issue 5) and the image builder (issue 4) follow.
#![forbid(unsafe_code)]

pub mod archive;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod convert;
pub mod doctor;
pub mod executor_config;
pub mod gc;
pub mod health;
pub mod http;
pub mod image_cmd;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod ratelimit;
pub mod run_cmd;
pub mod serve;
pub mod store;
