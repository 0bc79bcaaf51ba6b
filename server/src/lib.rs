//! The `pe` command: the HTTP server and the command-line tools around one run pipeline
//! (validate -> render argv from metadata -> cache key -> run -> result).
//!
//! 1. `main.rs` parses the command line ([`cli`]) and dispatches; [`executor_config`] turns the
//!    shared flags into an executor (accelerator, backend, QEMU's users, warm VMs).
//! 2. `pe serve` ([`serve`]) loads the catalog ([`catalog`]) and the store ([`store`]: SQLite,
//!    or PostgreSQL with `--database`, for permalinks, the result cache and usage), then serves [`http::app`] through its own
//!    accept loop ([`listener`]: header timeouts, connections per client, the client behind a
//!    trusted proxy from [`client`]).
//! 3. A run: [`http`] routes it, [`ratelimit`] admits the client, [`jobs`] turns the request
//!    into an executor job (option values checked and rendered by `shared::meta`), the cache
//!    answers or the executor's pool runs it, and [`convert`] is the one place executor
//!    results become API types (and, with the container's `[diagnostics]`, read the errors
//!    in the output). [`metrics`] and [`health`] watch it all. [`ce`] translates Compiler
//!    Explorer's REST API into runs of the same pipeline.
//! 4. The other commands use the same pieces: [`run_cmd`] (`pe run`, one job), [`image_cmd`]
//!    (`pe image`, with the `images` crate), [`archive`] (`pe archive`, the shared cpio codec),
//!    [`doctor`] (what this host can run) and [`gc`] (old cache entries, leftover directories).
//! 5. Cluster mode ([`cluster`]): `pe serve --nats` hands jobs to `pe worker`s through NATS
//!    JetStream instead of a local pool, and `--database postgres://` shares the store.
#![forbid(unsafe_code)]

pub mod archive;
pub mod builds;
pub mod catalog;
pub mod ce;
pub mod cli;
pub mod client;
pub mod cluster;
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
