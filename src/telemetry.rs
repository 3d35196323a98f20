//! Logging: a `tracing` subscriber, with pingora's `log` records bridged into it.
//!
//! `RUST_LOG` (or `--log`) filters; the default keeps lifecycle events and warnings, one
//! access line per request (target `access`), and pingora's own warnings. `--log-format json`
//! writes one JSON object per line for log shippers.

use tracing_subscriber::EnvFilter;

/// The filter used when neither `RUST_LOG` nor `--log` says otherwise. pingora-cache warns once
/// per process that no header-compression dictionary is loaded; that only costs a few bytes per
/// stored header, so it is demoted. foyer logs its recovery at info; that is kept to warnings.
pub const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora_cache=warn,\
     pingora_cache::meta=error,foyer=warn,foyer_storage=warn,foyer_memory=warn";

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(filter: Option<&str>, format: LogFormat) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init also installs the `log` bridge, so pingora's records arrive here.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
