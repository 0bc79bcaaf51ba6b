//! `pe`: parse the command line and dispatch; the work is in the library.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use server::archive;
use server::catalog::Catalog;
use server::cli::{ArchiveCommand, Cli, Command};

/// jemalloc rather than glibc's malloc: after a burst of large request bodies glibc kept the
/// freed memory (its arenas, and an mmap threshold that grows with each large free), so the
/// server's RSS stayed several times up while idle. jemalloc's background thread returns freed
/// pages within about a second (`background_thread`, `dirty_decay_ms` in .cargo/config.toml;
/// docs/RELIABILITY.md has the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("pe: {}", shared::error::chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build();
    match cli.command {
        Command::Archive(cmd) => archive_command(cmd),
        Command::Run(args) => {
            let catalog = load_catalog(cli.meta_dir.as_deref())?;
            runtime()?.block_on(server::run_cmd::run(&cli.executor, &catalog, args))
        }
        Command::Doctor => runtime()?.block_on(server::doctor::run(&cli.executor)),
        Command::Openapi => {
            io::stdout().write_all(server::http::openapi::document().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Image(cmd) => {
            let catalog = load_catalog(cli.meta_dir.as_deref())?;
            runtime()?.block_on(server::image_cmd::run(&cli.executor, &catalog, cmd))
        }
        Command::Serve(args) => {
            init_logging();
            let catalog = load_catalog(cli.meta_dir.as_deref())?;
            runtime()?.block_on(server::serve::run(&cli.executor, catalog, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            init_logging();
            let catalog = load_catalog(cli.meta_dir.as_deref())?;
            runtime()?.block_on(server::cluster::worker::run(&cli.executor, &catalog, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc { days, data_dir } => {
            let data_dir = data_dir.unwrap_or_else(server::serve::default_data_dir);
            runtime()?.block_on(server::gc::run(&cli.executor, &data_dir, days))
        }
    }
}

/// Structured logs on stderr; `RUST_LOG` filters, `PE_LOG_FORMAT=json` for JSON lines.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("PE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_catalog(meta_dir: Option<&Path>) -> anyhow::Result<Catalog> {
    Ok(match meta_dir {
        Some(dir) => Catalog::from_dir(dir)?,
        None => Catalog::embedded()?,
    })
}

fn archive_command(cmd: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ArchiveCommand::Pack { dir, output } => {
            let out: Box<dyn Write> = match &output {
                Some(path) => Box::new(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(io::stdout().lock()),
            };
            let mut out = BufWriter::new(out);
            archive::pack(&dir, &mut out)?;
            out.flush().context("cannot write the archive")?;
        }
        ArchiveCommand::Unpack { archive: path, dir } => {
            let count = archive::unpack(open_input(&path)?, &dir)?;
            eprintln!("pe: unpacked {count} entries into {}", dir.display());
        }
        ArchiveCommand::List { archive: path, verbose } => {
            archive::list(open_input(&path)?, verbose, BufWriter::new(io::stdout().lock()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_input(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin().lock())));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}
