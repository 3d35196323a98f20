//! `knitcache`: parse the command line, set up logging, then run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use knitcache::cli::{Cli, Command};
use knitcache::{app, config, demo, telemetry};

/// mimalloc rather than glibc's malloc: a hit allocates and frees dozens of small objects,
/// and mimalloc serves them with fewer instructions (measured in docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad configuration or command line (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status when the server cannot start (EX_SOFTWARE).
const EXIT_STARTUP: u8 = 70;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log.as_deref(), cli.log_format);
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                println!("{}: ok\n\n{}", config.display(), config::route_table(&c));
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
            let built = app::Listeners::bind(&c).and_then(|l| app::build(c, l));
            let server = match built {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("knitcache: {e}");
                    return ExitCode::from(EXIT_STARTUP);
                }
            };
            tracing::info!(proxy = %server.addrs.proxy, admin = %server.addrs.admin, "listening");
            server.run_until_signal();
            ExitCode::SUCCESS
        }
        Command::Demo {
            config,
            listen,
            erp_listen,
            admin_listen,
        } => demo::run(&config, listen, erp_listen, admin_listen),
        Command::ErpSim {
            listen,
            control_listen,
            mode,
            time_scale,
        } => match demo::run_erp_sim(listen, &mode, time_scale, control_listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("knitcache erp-sim: {e}");
                ExitCode::from(EXIT_STARTUP)
            }
        },
    }
}
