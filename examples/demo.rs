//! `make demo` (`cargo run --example demo`): the ERP simulator on loopback with knitcache in
//! front of it, using the shipped route table. An example rather than a subcommand, so that the
//! product binary does not carry the simulator (a dev-dependency).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use erp_sim::{ErpSim, Mode, SimOptions};
use knitcache::telemetry::{self, LogFormat};
use knitcache::{app, config};

/// Start the ERP simulator and knitcache in front of it on loopback, ready to browse.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Args {
    /// The config file (routes and TTLs); addresses and cache directory are the demo's own.
    #[arg(short, long, default_value = "config/knitcache.yaml")]
    config: PathBuf,
    /// Where the proxy listens.
    #[arg(long, default_value = "127.0.0.1:5006")]
    listen: SocketAddr,
    /// Where the simulated ERP listens.
    #[arg(long, default_value = "127.0.0.1:5007")]
    erp_listen: SocketAddr,
    /// Where the admin endpoints listen.
    #[arg(long, default_value = "127.0.0.1:5009")]
    admin_listen: SocketAddr,
    /// Log filter (tracing EnvFilter syntax); overrides RUST_LOG.
    #[arg(long)]
    log: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log.as_deref(), LogFormat::Text);
    let code = run(
        &args.config,
        args.listen,
        args.erp_listen,
        args.admin_listen,
    );
    telemetry::flush();
    code
}

/// Starts the simulator and the proxy in front of it, prints what to try, and serves until
/// interrupted.
fn run(config_path: &Path, listen: SocketAddr, erp: SocketAddr, admin: SocketAddr) -> ExitCode {
    let mut config = match config::load(config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid configuration\n{errors}", config_path.display());
            return ExitCode::from(64);
        }
    };
    config.listen = listen;
    config.admin_listen = admin;
    config.upstream.address = erp;
    config.cache.dir = std::env::temp_dir().join("knitcache-demo-cache");
    config.server.pid_file = std::env::temp_dir().join("knitcache-demo.pid");
    config.server.upgrade_sock = std::env::temp_dir().join("knitcache-demo-upgrade.sock");
    config.server.grace_period = std::time::Duration::from_secs(1);

    // The simulator runs on its own runtime thread for the life of the process.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let opts = SimOptions {
                mode: Mode::Rollback,
                time_scale: 1.0,
                control_listen: None,
            };
            match ErpSim::start(erp, opts).await {
                Ok(sim) => {
                    let _ = ready_tx.send(Ok(sim.addr()));
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        });
    });
    let erp_addr = match ready_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => {
            eprintln!("demo: cannot start the ERP simulator on {erp}: {e}");
            return ExitCode::from(70);
        }
        Err(_) => {
            eprintln!("demo: the ERP simulator thread stopped");
            return ExitCode::from(70);
        }
    };

    let cache_dir = config.cache.dir.clone();
    let server = match app::Listeners::bind(&config).and_then(|l| app::build(config, l)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(70);
        }
    };
    let p = server.addrs.proxy;
    let a = server.addrs.admin;
    println!(
        "\nknitcache demo\n\
         \x20 ERP simulator   http://{erp_addr}   (real latencies: /api/fabric-forecast-integrated takes ~2 s)\n\
         \x20 knitcache       http://{p}\n\
         \x20 admin           http://{a}/dashboard   http://{a}/stats   http://{a}/metrics   http://{a}/readyz\n\
         \x20 cache dir       {}\n\n\
         Try:\n\
         \x20 curl -sD- -o /dev/null http://{p}/api/fabric-forecast-integrated   # first: ~2 s, fwd=miss\n\
         \x20 curl -sD- -o /dev/null http://{p}/api/fabric-forecast-integrated   # again: instant, hit\n\
         \x20 curl -s --compressed -D- -o /dev/null http://{p}/api/knit-orders   # stored compressed\n\
         \x20 curl -s -X POST -d '{{\"qty\":1}}' http://{p}/api/knit-orders/generate   # writes pass through\n\
         \x20 open http://{p}/ in a browser (the ERP dashboard page)\n\
         \x20 open http://{a}/dashboard (knitcache's own live dashboard)\n\
         \x20 knitcache report --admin http://{a}   # per-route performance report\n\n\
         Ctrl-C stops both.\n",
        cache_dir.display()
    );
    server.run_until_signal();
    ExitCode::SUCCESS
}
