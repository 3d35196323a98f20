//! `knitcache demo` and `knitcache erp-sim`: the ERP simulator on loopback, alone or with the
//! proxy in front of it, using the shipped route table.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::app;
use crate::config;
use crate::erp_sim::{self, ErpSim, Mode, SimOptions};

/// Runs the simulator alone until interrupted.
pub fn run_erp_sim(
    listen: SocketAddr,
    mode: &str,
    time_scale: f64,
    control_listen: Option<SocketAddr>,
) -> Result<(), String> {
    let mode = parse_mode(mode)?;
    if !(time_scale.is_finite() && time_scale >= 0.0) {
        return Err(format!("--time-scale {time_scale} must be a number >= 0"));
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start runtime: {e}"))?;
    let served = runtime.block_on(erp_sim::run_cli(
        listen,
        SimOptions {
            mode,
            time_scale,
            control_listen,
        },
    ));
    // Dropping a runtime waits for its blocking handlers (the slow endpoints sleep on the
    // blocking pool); the process is on its way out, so only briefly.
    runtime.shutdown_timeout(erp_sim::SHUTDOWN_WAIT);
    served.map_err(|e| format!("cannot serve on {listen}: {e}"))
}

fn parse_mode(mode: &str) -> Result<Mode, String> {
    match mode {
        "rollback" => Ok(Mode::Rollback),
        "shipped" => Ok(Mode::Shipped),
        other => Err(format!(
            "--mode {other:?} is not a mode; use rollback or shipped"
        )),
    }
}

/// Starts the simulator and the proxy in front of it, prints what to try, and serves until
/// interrupted.
pub fn run(config_path: &Path, listen: SocketAddr, erp: SocketAddr, admin: SocketAddr) -> ExitCode {
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
            eprintln!("knitcache demo: cannot start the ERP simulator on {erp}: {e}");
            return ExitCode::from(70);
        }
        Err(_) => {
            eprintln!("knitcache demo: the ERP simulator thread stopped");
            return ExitCode::from(70);
        }
    };

    let cache_dir = config.cache.dir.clone();
    let server = match app::Listeners::bind(&config).and_then(|l| app::build(config, l)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("knitcache demo: {e}");
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
