//! Log output: `pretty` for people, `json` for collectors; the level comes from `RUST_LOG`.
//! Lines are written to stderr by a thread of their own, in batches (see [`Batch`]).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The longest a line waits before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes waiting that wake the writer before its interval is up.
const WAKE_AT: usize = 64 << 10;
/// Bytes waiting, at most: past this a request waits for the writer rather than lose its line.
const MAX_PENDING: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global subscriber (once; later calls are no-ops). Default level: `info`.
///
/// The returned guard writes what is still waiting when dropped: hold it until the process
/// exits.
#[must_use]
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a collected log are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = match Batch::start(std::io::stderr()) {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), guard),
        Err(e) => {
            eprintln!("warning: no thread to write the log ({e}): writing it from each request");
            let guard = LogGuard {
                batch: None,
                thread: None,
            };
            (BoxMakeWriter::new(std::io::stderr), guard)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// Log lines gathered for a writer thread that writes them all at once: [`FLUSH_INTERVAL`]
/// after the first line of a batch, or sooner when [`WAKE_AT`] bytes wait.
///
/// The access log writes a line for each request. Written by the request's own thread to an
/// unbuffered stderr, each line was a `write(2)` on the hot path: at the default level the
/// gateway served 0.33x of nginx's rate with stderr to a file and 0.54x to a pipe, against
/// 0.80x with `RUST_LOG=warn` (release build, one worker, one token, interleaved `wrk -c64`
/// rounds). tracing-appender's non-blocking writer took the writes off that path (0.41x to
/// 0.54x to a file), but it wakes its thread for every line, and those wake-ups were then
/// most of the cost. By hand, then: a request appends its line to a shared buffer, under a
/// lock held for the copy, and wakes the writer only for the first line of a batch, a full
/// batch, or a line that is not the access log's. Now 0.68x to a file and 0.76x to a pipe.
/// No line is dropped: when [`MAX_PENDING`] bytes wait, a request waits for room, as it
/// waited on a slow stderr before.
pub struct Batch {
    /// [`FLUSH_INTERVAL`], but in tests.
    interval: Duration,
    pending: Mutex<Pending>,
    /// The writer waits on it: for a first line, then for more until the interval is up.
    wake: Condvar,
    /// Requests wait on it while [`MAX_PENDING`] bytes are waiting.
    room: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer was woken since it began to wait: no need to wake it again (each `notify`
    /// is a system call).
    woken: bool,
    /// A line other than an access-log line waits: written now, not at the interval's end.
    urgent: bool,
    /// The guard was dropped: write what is left and stop.
    closed: bool,
}

impl Batch {
    /// Starts the writer thread over `out`; the guard stops it after a last write.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(BatchWriter, LogGuard)> {
        Batch::start_with(out, FLUSH_INTERVAL)
    }

    fn start_with<W: Write + Send + 'static>(
        out: W,
        interval: Duration,
    ) -> std::io::Result<(BatchWriter, LogGuard)> {
        let batch = Arc::new(Batch {
            interval,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
        });
        let thread = {
            let batch = batch.clone();
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || batch.write_until_closed(out))?
        };
        Ok((
            BatchWriter(batch.clone()),
            LogGuard {
                batch: Some(batch),
                thread: Some(thread),
            },
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A poisoned lock only means a panic elsewhere mid-copy: the bytes are still bytes.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a wake-up, or `timeout`. What came before the wait began was looked at by
    /// the caller: from now on, a line that needs the writer must wake it.
    fn wait<'a>(
        &self,
        mut pending: MutexGuard<'a, Pending>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Pending> {
        pending.woken = false;
        match timeout {
            None => self.wake.wait(pending).unwrap_or_else(|p| p.into_inner()),
            Some(t) => self
                .wake
                .wait_timeout(pending, t)
                .map_or_else(|p| p.into_inner().0, |(p, _)| p),
        }
    }

    fn write_until_closed<W: Write>(&self, mut out: W) {
        let mut batch = Vec::new();
        loop {
            let closed = {
                let mut pending = self.lock();
                while pending.lines.is_empty() && !pending.closed {
                    pending = self.wait(pending, None);
                }
                // Gather more for the interval, unless a full batch, an urgent line or the
                // guard wakes us.
                if !pending.closed && !pending.urgent && pending.lines.len() < WAKE_AT {
                    pending = self.wait(pending, Some(self.interval));
                }
                // The two buffers trade places: both keep their capacity.
                std::mem::swap(&mut batch, &mut pending.lines);
                pending.urgent = false;
                pending.closed
            };
            self.room.notify_all();
            // Nowhere to report a failing stderr: the lines are dropped, never retried (a
            // request must not wait on a stderr that is gone).
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if closed {
                return;
            }
        }
    }

    fn append(&self, line: &[u8], urgent: bool) {
        let mut pending = self.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = self.room.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        pending.urgent |= urgent;
        if (first || urgent || pending.lines.len() >= WAKE_AT) && !pending.woken {
            pending.woken = true;
            self.wake.notify_one();
        }
    }
}

/// What the subscriber writes each line with: a handle on the [`Batch`].
#[derive(Clone)]
pub struct BatchWriter(Arc<Batch>);

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            batch: &self.0,
            urgent: true,
        }
    }

    /// Access-log lines wait for their batch; the rest (start, reloads, warnings: rare, and
    /// read by people as they happen) are written at once.
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            batch: &self.0,
            urgent: meta.target() != ACCESS_LOG,
        }
    }
}

/// The target of the access log's events (`pipeline::finish`).
pub const ACCESS_LOG: &str = "access";

/// One event's line, on its way to the [`Batch`].
pub struct Line<'a> {
    batch: &'a Batch,
    urgent: bool,
}

/// tracing's formatter writes each event once, whole: a `write` call is one line.
impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.batch.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops the writer thread after it wrote every line still waiting.
pub struct LogGuard {
    batch: Option<Arc<Batch>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(batch) = &self.batch {
            batch.lock().closed = true;
            batch.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that keeps what it is given, with the number of writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An access-log line's writer, as the subscriber makes one.
    fn access(writer: &BatchWriter) -> Line<'_> {
        Line {
            batch: &writer.0,
            urgent: false,
        }
    }

    #[test]
    fn lines_are_written_in_order_in_few_writes_and_all_of_them_by_the_guard() {
        let sink = Sink::default();
        let (writer, guard) = Batch::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        let line = format!("thread {t} line {i}\n");
                        access(&writer).write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..10_000).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(writes < 1_000, "{writes} writes for 40,000 lines");
    }

    /// A `Write` as slow as a busy disk, counting the writes it began: lines keep coming while
    /// it writes.
    struct Slow(Sink, Arc<std::sync::atomic::AtomicUsize>);

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A full batch while the writer is busy writing the one before, then quiet, then one
    /// line: that line must still wake the writer (a wake-up flag left set by the full batch
    /// once kept it asleep for good).
    #[test]
    fn a_line_after_a_batch_gathered_during_a_write_is_still_written() {
        let sink = Sink::default();
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (writer, _guard) = Batch::start(Slow(sink.clone(), started.clone())).unwrap();
        let full = vec![b'x'; WAKE_AT + 1];
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let begun = |n| {
            let started = started.clone();
            move || started.load(std::sync::atomic::Ordering::SeqCst) >= n
        };
        let written = |n| {
            let sink = sink.clone();
            move || sink.0.lock().unwrap().0.len() >= n
        };
        access(&writer).write_all(&full).unwrap();
        until("a first write", &begun(1));
        access(&writer).write_all(&full).unwrap();
        until("a second write", &begun(2));
        until("both written", &written(2 * full.len()));
        std::thread::sleep(Duration::from_millis(20));
        access(&writer).write_all(b"last\n").unwrap();
        until("the last line written", &written(2 * full.len() + 5));
    }

    /// With an interval of an hour, an access-log line waits for the guard, and any other
    /// line is written at once, with the access-log lines before it.
    #[test]
    fn lines_other_than_the_access_logs_are_written_at_once() {
        let sink = Sink::default();
        let (writer, guard) = Batch::start_with(sink.clone(), Duration::from_secs(3600)).unwrap();
        access(&writer).write_all(b"request\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            sink.0.lock().unwrap().0.is_empty(),
            "written before its batch"
        );
        writer.make_writer().write_all(b"reloaded\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        access(&writer).write_all(b"request\n").unwrap();
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0, b"request\nreloaded\nrequest\n");
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_more_coming() {
        let sink = Sink::default();
        let (writer, _guard) = Batch::start(sink.clone()).unwrap();
        access(&writer).write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 20;
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }
}
