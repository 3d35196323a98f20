//! Logging: a `tracing` subscriber, with pingora's `log` records bridged into it.
//!
//! `RUST_LOG` (or `--log`) filters; the default keeps lifecycle events and warnings, one
//! access line per request (target `access`), and pingora's own warnings. `--log-format json`
//! writes one JSON object per line for log shippers.
//!
//! Every line goes through one `log_sink::Sink`: appended to a bounded buffer in memory and
//! written to stderr in batches by a thread of its own, so no request ever waits for stderr.
//! A line reaches stderr at most 100 ms late, and the buffer is flushed when the process ends.
//!
//! foyer's error events on the cache's I/O threads go to `cache::disk_health::FoyerErrors`
//! instead, which counts them and logs each kind once a minute (foyer logs one per failed
//! flush, with multi-line error forms).

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, filter};

use crate::cache::disk_health;

use crate::log_sink::{PENDING_LIMIT, Sink};

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

/// How long the last flush waits for stderr at exit: a stalled stderr must not hold up the end
/// of the process for ever.
const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The writer tracing gets per event; the formatter hands it one whole line.
pub struct SinkLine<'a>(&'a Sink);

impl Write for SinkLine<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands tracing the process's sink.
struct ToSink(Sink);

impl<'a> MakeWriter<'a> for ToSink {
    type Writer = SinkLine<'a>;

    fn make_writer(&'a self) -> SinkLine<'a> {
        SinkLine(&self.0)
    }
}

/// The process's log sink, once `init` has run.
static SINK: OnceLock<Sink> = OnceLock::new();
/// The line format chosen at `init`.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The line format in force (text before `init`).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// Appends one already formatted line (ending in `\n`) to the log, beside tracing's lines.
/// Used by the access log, which formats its own lines to stay cheap; before `init` (tests,
/// benches) the line is dropped, as tracing would drop it without a subscriber.
pub fn write_line(line: &[u8]) {
    if let Some(sink) = SINK.get() {
        sink.write_line(line);
    }
}

/// Writes out buffered log lines, waiting for stderr a bounded time; call before the process
/// exits.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush(EXIT_FLUSH_WAIT);
    }
}

/// Log lines dropped because stderr did not keep up (or failed), since the process started.
pub fn dropped_lines() -> u64 {
    SINK.get().map_or(0, Sink::dropped)
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
/// Call [`flush`] before exiting so the last lines are written.
pub fn init(filter: Option<&str>, format: LogFormat) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let _ = FORMAT.set(format);
    let sink = match SINK.get() {
        Some(sink) => sink.clone(),
        None => match Sink::spawn(std::io::stderr(), PENDING_LIMIT) {
            Ok(sink) => SINK.get_or_init(|| sink).clone(),
            Err(e) => {
                // No thread, no log: say so the only way left, and run without one.
                eprintln!("knitcache: cannot start the log writer thread: {e}");
                return;
            }
        },
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(ToSink(sink));
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let not_foyers_errors = filter::filter_fn(|meta| !disk_health::handled_here(meta));
    // try_init also installs the `log` bridge, so pingora's records arrive here.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter.and(not_foyers_errors)))
        .with(disk_health::FoyerErrors.with_filter(filter::LevelFilter::ERROR))
        .try_init();
}
