//! `erp-sim`: the simulator alone on a port until interrupted, for the load suite, the
//! deployment's `erp` container and anyone trying knitcache without the real ERP.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erp_sim::{ErpSim, Mode, SimOptions};

/// How long an interrupted simulator waits for its connections to close.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Exit status when the simulator cannot start (EX_SOFTWARE).
const EXIT_STARTUP: u8 = 70;

/// A simulator of the Beverly Knits ERP, fault switches under /__sim/.
#[derive(Debug, Parser)]
#[command(name = "erp-sim", version, about)]
struct Args {
    /// Where the simulator listens.
    #[arg(long, default_value = "127.0.0.1:5007")]
    listen: SocketAddr,
    /// A second listener for the simulator's fault switches (reachable while "down").
    #[arg(long)]
    control_listen: Option<SocketAddr>,
    /// Which ERP to imitate: `rollback` (handlers reachable) or `shipped` (v2 redirects).
    #[arg(long, default_value = "rollback")]
    mode: Mode,
    /// Multiply every simulated latency by this (0.01 makes a 2 s forecast take 20 ms).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("erp-sim: {e}");
            ExitCode::from(EXIT_STARTUP)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err(format!(
            "--time-scale {} must be a number >= 0",
            args.time_scale
        ));
    }
    let listen = args.listen;
    let opts = SimOptions {
        mode: args.mode,
        time_scale: args.time_scale,
        control_listen: args.control_listen,
    };
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start runtime: {e}"))?;
    let served = runtime.block_on(serve(listen, opts));
    // Dropping a runtime waits for its blocking handlers (the slow endpoints sleep on the
    // blocking pool); the process is on its way out, so only briefly.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    served.map_err(|e| format!("cannot serve on {listen}: {e}"))
}

/// Serves until ctrl-c. Prints the bound address and where the control endpoints are.
async fn serve(listen: SocketAddr, opts: SimOptions) -> io::Result<()> {
    let (mode, scale) = (opts.mode, opts.time_scale);
    let sim = ErpSim::start(listen, opts).await?;
    println!(
        "erp-sim listening on http://{} (mode {mode}, time scale {scale})",
        sim.addr()
    );
    let control = sim.control_addr().unwrap_or_else(|| sim.addr());
    println!("erp-sim control on http://{control}/__sim/counters");
    tokio::signal::ctrl_c().await?;
    // Whoever sends the interrupt (a terminal, the load suite, a parent's death signal) expects
    // the process gone, and after the first interrupt a second one no longer reaches the default
    // handler: nothing the shutdown waits for may keep the process alive.
    if tokio::time::timeout(SHUTDOWN_WAIT, sim.shutdown())
        .await
        .is_err()
    {
        eprintln!("erp-sim: still closing after {SHUTDOWN_WAIT:?}; exiting anyway");
    }
    Ok(())
}
