//! The log's way out of the process: a bounded buffer in memory and one writer thread.
//!
//! Every log line (the access log's and `tracing`'s) is appended to the buffer under a short
//! lock, a copy and nothing else; the writer thread takes the whole buffer, leaving an empty
//! one in its place, and writes it to stderr outside the lock. So a request thread never
//! writes, never flushes and never waits for stderr: a slow journald or a pipe nobody reads
//! stalls the writer thread alone. While it is stalled lines pile up to `limit` bytes; past
//! that a line is dropped whole and counted (`knitcache_access_log_dropped_total`), never
//! half-written and never waited for.
//!
//! Lines go out in batches, as before: when `BATCH_BYTES` have piled up (the writer is woken
//! once per batch, not per line) and at least every `FLUSH_EVERY`, so a line is written at most
//! that late; [`Sink::flush`] writes what is pending at once, waiting a bounded time (shutdown
//! must not hang on a stalled stderr either). Writing each line with its own `write` had cost
//! 5-10 µs of a hit's CPU; in a batch it is about a hundredth of that.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The writer is woken when this many bytes are pending.
pub const BATCH_BYTES: usize = 32 * 1024;
/// ... and writes what is pending at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Bytes that may wait for a stalled writer before lines are dropped: about 3,000 access lines,
/// several hundred milliseconds of a busy proxy's log.
pub const PENDING_LIMIT: usize = 1024 * 1024;

/// A handle on the buffer; clones share it. The writer thread ends once every handle is gone
/// and what was pending is written.
#[derive(Clone)]
pub struct Sink(Arc<Handle>);

/// Closes the sink when the last handle goes.
struct Handle(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: a batch is full, a flush is wanted, or the sink closed.
    wake: Condvar,
    /// Tells flushers a batch was written.
    written: Condvar,
    limit: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Batches the writer has taken, and of those, written (or failed to write).
    taken: u64,
    done: u64,
    flush_wanted: bool,
    closed: bool,
}

impl Sink {
    /// A sink writing to `out` from a thread of its own, holding at most `limit` bytes for it.
    pub fn spawn(out: impl Write + Send + 'static, limit: usize) -> std::io::Result<Sink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
            limit,
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("knitcache-log".into())
            .spawn(move || write_out(&writer, out))?;
        Ok(Sink(Arc::new(Handle(shared))))
    }

    /// Appends one whole line (ending in `\n`), or drops and counts it if the writer is that far
    /// behind. Never blocks on the output.
    pub fn write_line(&self, line: &[u8]) {
        let shared = &(self.0).0;
        let mut state = shared.state.lock();
        if state.pending.len() + line.len() > shared.limit {
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let below = state.pending.len() < BATCH_BYTES;
        state.pending.extend_from_slice(line);
        if below && state.pending.len() >= BATCH_BYTES {
            shared.wake.notify_one();
        }
    }

    /// Writes out what is pending now and waits until it is written, at most `wait`; `false` if
    /// the output did not take it in time.
    pub fn flush(&self, wait: Duration) -> bool {
        let shared = &(self.0).0;
        let deadline = Instant::now() + wait;
        let mut state = shared.state.lock();
        // The lines appended so far are in the batch being written, or in the next one.
        let target = state.taken + u64::from(!state.pending.is_empty());
        if state.done >= target {
            return true;
        }
        state.flush_wanted = true;
        shared.wake.notify_one();
        while state.done < target {
            if shared.written.wait_until(&mut state, deadline).timed_out() {
                return state.done >= target;
            }
        }
        true
    }

    /// Lines dropped so far: the writer was too far behind, or the output failed.
    pub fn dropped(&self) -> u64 {
        (self.0).0.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.state.lock().closed = true;
        self.0.wake.notify_one();
    }
}

/// The writer thread: takes the pending lines in batches and writes them to `out`.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        let (taken, closed) = {
            let mut state = shared.state.lock();
            if state.pending.len() < BATCH_BYTES && !state.flush_wanted && !state.closed {
                shared.wake.wait_for(&mut state, FLUSH_EVERY);
            }
            state.flush_wanted = false;
            std::mem::swap(&mut state.pending, &mut batch);
            state.taken += 1;
            (state.taken, state.closed && state.pending.is_empty())
        };
        if !batch.is_empty() {
            if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                // Nowhere to report a failing stderr: its lines are counted as dropped.
                let lines = batch.iter().filter(|b| **b == b'\n').count();
                shared
                    .dropped
                    .fetch_add(u64::try_from(lines).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            batch.clear();
            // A stall may have grown the buffers to `limit`; they need not stay that big.
            if batch.capacity() > 4 * BATCH_BYTES {
                batch = Vec::with_capacity(BATCH_BYTES);
            }
        }
        shared.state.lock().done = taken;
        shared.written.notify_all();
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// An output that hands each write to the test, and blocks while the test holds the gate.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        seen: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock();
            let _ = self.seen.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn gated(limit: usize) -> (Sink, Arc<Mutex<()>>, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let out = Gated {
            gate: gate.clone(),
            seen: tx,
        };
        (Sink::spawn(out, limit).expect("writer thread"), gate, rx)
    }

    fn drain(rx: &mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
        rx.try_iter().flatten().collect()
    }

    #[test]
    fn a_stalled_output_costs_dropped_lines_never_a_wait() {
        let (sink, gate, rx) = gated(1000);
        let stalled = gate.lock();
        // The first line reaches the writer, which then blocks on the output.
        sink.write_line(b"first\n");
        assert!(
            !sink.flush(Duration::from_millis(50)),
            "the output is stalled"
        );
        // Meanwhile 2,000 lines arrive: every call returns; what does not fit is dropped.
        for n in 0..2_000 {
            sink.write_line(format!("line {n:04}\n").as_bytes());
        }
        let kept = 1000 / "line 0000\n".len();
        assert_eq!(sink.dropped(), (2_000 - kept) as u64);
        drop(stalled);
        assert!(
            sink.flush(Duration::from_secs(10)),
            "written once the output moves"
        );
        let text = String::from_utf8(drain(&rx)).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + kept, "what was kept is written whole");
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1], "line 0000");
        assert_eq!(lines[kept], format!("line {:04}", kept - 1), "in order");
    }

    #[test]
    fn nothing_is_lost_when_the_output_keeps_up() {
        let (sink, _gate, rx) = gated(PENDING_LIMIT);
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for n in 0..5_000 {
                        sink.write_line(format!("{t} {n}\n").as_bytes());
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let text = String::from_utf8(drain(&rx)).expect("utf-8");
        assert_eq!(text.lines().count(), 20_000);
        assert_eq!(sink.dropped(), 0);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            assert_eq!(mine.len(), 5_000);
            assert_eq!(
                mine[4_999],
                format!("{t} 4999"),
                "each thread's lines in order"
            );
        }
    }

    #[test]
    fn lines_go_out_without_a_flush_and_when_the_last_handle_goes() {
        let (sink, _gate, rx) = gated(PENDING_LIMIT);
        sink.write_line(b"soon\n");
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("written within the flush interval");
        assert_eq!(first, b"soon\n");
        sink.write_line(b"last\n");
        drop(sink);
        let last = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("written on close");
        assert_eq!(last, b"last\n");
    }

    #[test]
    fn a_failing_output_counts_its_lines_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::spawn(Broken, PENDING_LIMIT).expect("writer");
        sink.write_line(b"a\n");
        sink.write_line(b"b\n");
        assert!(sink.flush(Duration::from_secs(10)));
        assert_eq!(sink.dropped(), 2);
    }
}
