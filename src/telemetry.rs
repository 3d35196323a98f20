//! Logging: a `tracing` subscriber, with pingora's `log` records bridged into it.
//!
//! `RUST_LOG` (or `--log`) filters; the default keeps lifecycle events and warnings, one
//! access line per request (target `access`), and pingora's own warnings. `--log-format json`
//! writes one JSON object per line for log shippers.
//!
//! Lines are collected in a buffer and written to stderr 32 KiB at a time, and at least every
//! 100 ms by a small flusher thread. Writing each access line with its own `write` cost 5-10 µs
//! of CPU per hit (a quarter of a hit); batched, the write is about a hundredth of that. A line
//! reaches stderr at most 100 ms late, and the buffer is flushed when the process ends normally.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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

/// The buffer is written out when it holds this many bytes.
const FLUSH_BYTES: usize = 32 * 1024;
/// ... and at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Log lines on their way to stderr.
#[derive(Clone, Default)]
pub struct Batched(Arc<Mutex<Vec<u8>>>);

impl Batched {
    /// Writes out what is buffered.
    pub fn flush(&self) {
        let mut buf = self.0.lock();
        write_out(&mut buf);
    }
}

/// Writes `buf` to stderr and empties it. Called with the lock held, so lines keep their order.
fn write_out(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    // Nowhere to report a failing stderr; the lines are dropped rather than kept forever.
    let _ = err.write_all(buf);
    let _ = err.flush();
    buf.clear();
}

/// The writer tracing gets per event; the formatter hands it one whole line.
pub struct BatchedLine<'a>(&'a Batched);

impl Write for BatchedLine<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = (self.0).0.lock();
        buf.extend_from_slice(data);
        if buf.len() >= FLUSH_BYTES {
            write_out(&mut buf);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = BatchedLine<'a>;

    fn make_writer(&'a self) -> BatchedLine<'a> {
        BatchedLine(self)
    }
}

/// The process's log buffer, once `init` has run.
static BATCHED: OnceLock<Batched> = OnceLock::new();
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
    if let Some(b) = BATCHED.get() {
        let _ = b.make_writer().write_all(line);
    }
}

/// Writes out buffered log lines; call before the process exits.
pub fn flush() {
    if let Some(b) = BATCHED.get() {
        b.flush();
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
/// Call [`flush`] before exiting so the last lines are written.
pub fn init(filter: Option<&str>, format: LogFormat) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let _ = FORMAT.set(format);
    let batched = BATCHED
        .get_or_init(|| {
            let b = Batched::default();
            let flusher = b.clone();
            // Detached on purpose: it lives as long as the process and holds no resources.
            let _ = std::thread::Builder::new()
                .name("knitcache-log-flush".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(FLUSH_EVERY);
                        flusher.flush();
                    }
                });
            b
        })
        .clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batched);
    // try_init also installs the `log` bridge, so pingora's records arrive here.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_buffered_until_the_batch_fills() {
        let b = Batched::default();
        let mut w = b.make_writer();
        w.write_all(b"{\"a\":1}\n").expect("write");
        assert_eq!(b.0.lock().len(), 8, "kept, not written");
        let big = vec![b'x'; FLUSH_BYTES];
        w.write_all(&big).expect("write");
        assert!(b.0.lock().is_empty(), "a full batch is written out");
    }
}
