//! The command line of `pe`. Every subcommand is documented here; `pe help SUBCOMMAND` shows it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Program Explorer: run any container on any input in a fresh microVM.
#[derive(Debug, Parser)]
#[command(name = "pe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and the HTTP API.
    Serve,
    /// Run a container on input files in a microVM and print its output.
    Run,
    /// Build, list, inspect, test and remove container images.
    Image,
    /// Pack, unpack and list cpio newc archives (the format of inputs and outputs).
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Check the host: accelerator, QEMU, kernel, images, data directory.
    Doctor,
    /// Remove old cache entries and temporary files.
    Gc,
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
