//! The command line of `pe`. Every subcommand is documented here; `pe help SUBCOMMAND` shows it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::executor_config::ExecutorArgs;

/// Program Explorer: run any container on any input in a fresh microVM.
#[derive(Debug, Parser)]
#[command(name = "pe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// Read the container catalog from this directory instead of the copy built into `pe`.
    #[arg(long, env = "PE_META_DIR", global = true)]
    pub meta_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and the HTTP API.
    Serve(crate::serve::ServeArgs),
    /// Take jobs from a NATS JetStream work queue and run them (cluster mode; docs/SCALING.md).
    Worker(crate::cluster::worker::WorkerArgs),
    /// Run a container on input files in a microVM and print its output.
    ///
    /// Exits with the program's exit status (128+N for signal N, 124 on timeout, 137 when out
    /// of memory, 125 if it could not start).
    Run(RunArgs),
    /// Build, list, inspect, test and remove container images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Pack, unpack and list cpio newc archives (the format of inputs and outputs).
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Check the host: accelerator, QEMU, kernel, images, data directory.
    Doctor,
    /// Print the HTTP API's OpenAPI document, generated from the code
    /// (`pe openapi > docs/openapi.json`).
    Openapi,
    /// Remove old cache entries and temporary files.
    Gc {
        /// Remove cache entries unused for this many days.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// The server's data directory [default: ~/.local/share/program-explorer].
        #[arg(long, env = "PE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A container of the catalog (`gcc`), or the path of an image file (squashfs or erofs).
    /// Without ARGV the container's own command line runs, rendered from its options.
    pub image: String,
    /// Set a container option: `ID=VALUE` (VALUE is JSON when it parses as JSON, e.g. `true`,
    /// `3`, `["-Wall"]`, else a string).
    #[arg(short = 'O', long = "option", value_name = "ID=VALUE")]
    pub options: Vec<String>,
    /// Run one of the container's examples (by name), files and options included.
    #[arg(long, value_name = "NAME")]
    pub example: Option<String>,
    /// Put a file in /input: `PATH` (as its file name) or `PATH=NAME`.
    #[arg(short, long = "file", value_name = "PATH[=NAME]")]
    pub files: Vec<String>,
    /// Feed this file to the program's standard input.
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Set an environment variable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Write the files the program left in /output to this directory.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the whole result as JSON (the API's JSON form) instead of the program's output.
    #[arg(long, conflicts_with = "interactive")]
    pub json: bool,
    /// Live: the program's stdout and stderr as it writes them, and this terminal's stdin fed
    /// to it as it is typed (end of file closes it; `--stdin FILE` is fed first). Ctrl-C ends
    /// the VM and exits 130.
    #[arg(short, long)]
    pub interactive: bool,
    /// Wall-clock limit in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = shared::limits::DEFAULT_MEMORY_MIB)]
    pub memory: u32,
    /// Working directory inside the container.
    #[arg(long, default_value = "/input")]
    pub cwd: String,
    /// The command to run and its arguments, instead of the container's own (for a catalog
    /// container these are extra arguments when `--args` is given).
    #[arg(last = true)]
    pub argv: Vec<String>,
    /// Pass ARGV as extra arguments to the container's own command line.
    #[arg(long)]
    pub args: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build images from their recipes (skipped when up to date).
    Build {
        /// Container ids.
        ids: Vec<String>,
        /// Build every container of the catalog.
        #[arg(long)]
        all: bool,
        /// Rebuild even when the image is up to date.
        #[arg(long)]
        force: bool,
        /// How many images to build at once [default: 2 on a machine with 2 or more cores,
        /// else 1]. Builds share the package download cache.
        #[arg(long, short = 'j', env = "PE_BUILD_JOBS")]
        jobs: Option<usize>,
    },
    /// List the catalog's images with size, digest and build date.
    List,
    /// Show a container's description, options and examples.
    Info { id: String },
    /// Run the containers' examples in microVMs and check their results.
    Test {
        ids: Vec<String>,
        /// Test every container of the catalog.
        #[arg(long)]
        all: bool,
    },
    /// Remove a built image.
    Rm { id: String },
    /// Upload a built image to the cluster's object store under its digest, for workers
    /// that lack it (docs/SCALING.md).
    Push {
        id: String,
        /// The cluster's NATS server: `nats://HOST:PORT`.
        #[arg(long, env = "PE_NATS")]
        nats: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Write an archive of everything under DIR (paths relative to DIR).
    Pack {
        dir: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check ARCHIVE against the archive rules, then extract it into DIR.
    Unpack {
        /// Archive file, or `-` for standard input.
        archive: PathBuf,
        dir: PathBuf,
    },
    /// List the entries of ARCHIVE, one path per line.
    List {
        /// Archive file, or `-` for standard input.
        archive: PathBuf,
        /// Show mode and size too.
        #[arg(short, long)]
        verbose: bool,
    },
}
