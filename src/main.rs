//! `knitcache`: parse the command line, set up logging, then run the chosen command.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use knitcache::cli::{Cli, Command, ReportFormat};
use knitcache::{app, cache, config, report, telemetry};

// The allocator is a build feature so that the choice can be re-measured (docs/PERFORMANCE.md,
// "Memory, step by step"); without either feature the binary uses glibc's malloc.
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("choose one allocator: build with `--no-default-features --features mimalloc`");

/// jemalloc by default. Per hit it costs what mimalloc does (2 % more instructions) and 8 %
/// less than glibc's malloc; with a full memory tier and 1,000 connections its peak RSS was
/// 63 MiB below either (docs/PERFORMANCE.md, "Memory, step by step").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). A background thread returns freed pages to the kernel after half a second
/// rather than ten on the next allocation: the memory tier churns 100 KB bodies, and without
/// it their pages stay resident after eviction. Half a second rather than one took 0.5-1 MiB
/// off the memory scenario's promotions peak (docs/PERFORMANCE.md); a quarter, in one run,
/// another MiB, at a lower request rate.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 84] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:500,muzzy_decay_ms:0\0";

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad configuration or command line (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status when the server cannot start (EX_SOFTWARE).
const EXIT_STARTUP: u8 = 70;
/// Exit status when the admin listener cannot be read (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let code = run();
    telemetry::flush();
    code
}

fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log.as_deref(), cli.log_format());
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                // A closed pipe (`check | head`) is not an error worth a panic.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{}: ok\n\n{}",
                    config.display(),
                    config::route_table(&c)
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid configuration\n{errors}", config.display());
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Run(args) => {
            let mut c = match config::load(&args.config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!(
                        "{}: invalid configuration, not starting\n{errors}",
                        args.config.display()
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            args.apply(&mut c);
            // Client connections and sealed bodies (`cache::sealed_body`) both need descriptors.
            let open_files = cache::sealed_body::raise_open_files_limit();
            let built = if args.upgrade {
                app::build_upgrade(c)
            } else {
                app::Listeners::bind(&c).and_then(|l| app::build(c, l))
            };
            let mut server = match built {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("knitcache: {e}");
                    return ExitCode::from(EXIT_STARTUP);
                }
            };
            let watch = args
                .watch_config
                .then_some(std::time::Duration::from_secs(2));
            let path = args.config.clone();
            server.reload_from(path, Box::new(move |c| args.apply(c)), watch);
            tracing::info!(proxy = %server.addrs.proxy, admin = %server.addrs.admin, tls = ?server.addrs.tls, open_files = ?open_files, "listening");
            server.run_until_signal();
            ExitCode::SUCCESS
        }
        Command::Report { admin, format } => match report::fetch(&admin) {
            Ok(doc) => {
                match format {
                    ReportFormat::Text => print!("{}", report::render_text(&doc)),
                    ReportFormat::Json => match serde_json::to_string_pretty(&report::rows(&doc)) {
                        Ok(json) => println!("{json}"),
                        Err(e) => {
                            eprintln!("knitcache report: {e}");
                            return ExitCode::from(EXIT_STARTUP);
                        }
                    },
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("knitcache report: {e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        },
    }
}
