//! Limits, in one place. "Default" is what a job gets unless the server is configured otherwise;
//! "max" is the ceiling no configuration or request can exceed.

/// Largest JSON header accepted in a frame (API or guest protocol).
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Largest whole request body (`application/x-pe-archive` or JSON) the server accepts.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Most entries (files plus directories) in an input archive.
pub const MAX_INPUT_ENTRIES: usize = 1_000;

/// Most bytes of file content in an input archive.
pub const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// Longest path in any archive, in bytes.
pub const MAX_PATH_LEN: usize = 1_024;

/// Longest component of a path (a file or directory name), in bytes: Linux file systems refuse
/// longer names.
pub const MAX_NAME_BYTES: usize = 255;

/// Deepest path in any archive, in components (`a/b/c` is 3).
pub const MAX_PATH_DEPTH: usize = 32;

/// Most bytes of stdin.
pub const MAX_STDIN_BYTES: usize = 1024 * 1024;

/// Bytes of stdout kept; the rest is dropped and the result says `output_limit`.
pub const DEFAULT_STDOUT_BYTES: u64 = 1024 * 1024;

/// Bytes of stderr kept.
pub const DEFAULT_STDERR_BYTES: u64 = 1024 * 1024;

/// Total bytes of files returned from the output directory.
pub const DEFAULT_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Number of entries returned from the output directory.
pub const DEFAULT_OUTPUT_ENTRIES: usize = 256;

/// Most entries in any archive a decoder accepts (the output archive adds stdout and stderr).
pub const MAX_ARCHIVE_ENTRIES: usize = 4_096;

/// Most bytes of content in any archive a decoder accepts.
pub const MAX_ARCHIVE_BYTES: u64 = 64 * 1024 * 1024;

/// Wall-clock limit of one run, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Ceiling on the wall-clock limit, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Guest memory, MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

/// Size cap of the writable tmpfs in the guest (overlay upper dir, /tmp, /output), MiB.
pub const DEFAULT_SCRATCH_MIB: u32 = 256;

/// Most processes and threads the program may have at once.
pub const DEFAULT_PIDS_MAX: u32 = 256;

/// Virtual CPUs per VM.
pub const VCPUS: u32 = 1;
