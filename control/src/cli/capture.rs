//! `vswitchctl capture PORT -w FILE`: starts a capture, reads it until the count is reached or
//! SIGINT/SIGTERM arrives, writes the frames as pcap (to stdout with `-w -`), then stops it and
//! prints a summary on stderr. A reader that goes away (`| tcpdump -c 3 -r -`) ends it quietly.

use super::plan::Call;
use super::render;
use super::CliError;
use control::client::Client;
use control::pcap::PcapWriter;
use control::proto::{
    cmd, CaptureBatch, CaptureId, CaptureRead, CaptureStarted, CaptureSummary, CAPTURE_MAX_READ,
};
use control::text::decode_hex;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the SIGINT/SIGTERM handler: finish the file and stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// Pause between reads that found nothing.
const IDLE: Duration = Duration::from_millis(50);
/// Reads after a stop signal to collect what was taken before it.
const FINAL_READS: usize = 16;

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`STOP`].
fn catch_signals() -> Result<(), CliError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed `sigaction` is a valid value (empty mask, no flags), to which we
        // give a handler that only stores to an atomic (async-signal-safe).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `sa` is initialised above and outlives the call; a null old action is allowed.
        let r = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
        if r != 0 {
            return Err(CliError::Failed(format!(
                "cannot catch signal {sig}: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn write_err(e: io::Error, to: &str) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::Closed
    } else {
        CliError::Failed(format!("cannot write to {to}: {e}"))
    }
}

/// How a capture run ended.
#[derive(Default)]
struct Outcome {
    /// Frames written to the file.
    written: u64,
    /// Frames the ring missed.
    missed: u64,
    /// Why the daemon ended it early, if it did.
    ended: Option<String>,
    /// The reader of our output went away.
    closed: bool,
}

/// Runs the capture `call` starts, writing to `out` (stdout when `None`).
pub(crate) fn run(client: &mut Client, call: &Call, out: Option<&Path>) -> Result<(), CliError> {
    catch_signals()?;
    let started: CaptureStarted =
        render::decode(call.cmd, client.call(call.cmd, call.args.clone())?)?;
    let to = out.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    let mut o = Outcome::default();
    let result =
        open(out, started.snaplen, &to).and_then(|w| copy(client, started.id, w, &to, &mut o));
    // Stop it whatever happened; the daemon also stops it when this connection closes.
    let summary = client
        .call(cmd::CAPTURE_STOP, to_args(&CaptureId { id: started.id })?)
        .ok()
        .and_then(|v| serde_json::from_value::<CaptureSummary>(v).ok());
    match result {
        Ok(()) => {}
        Err(CliError::Closed) => o.closed = true,
        Err(e) => return Err(e),
    }
    let missed = summary
        .as_ref()
        .map_or(o.missed, |s| s.missed.max(o.missed));
    let mut err = io::stderr().lock();
    // Nothing more can be done if stderr itself is gone.
    let _ = writeln!(
        err,
        "{} packets captured, {missed} packets missed (the capture ring was full)",
        o.written
    );
    if let Some(why) = o.ended {
        let _ = writeln!(err, "capture ended: {why}");
    }
    if o.closed {
        return Err(CliError::Closed);
    }
    Ok(())
}

fn to_args(v: &impl serde::Serialize) -> Result<serde_json::Value, CliError> {
    serde_json::to_value(v).map_err(|e| CliError::Failed(format!("cannot encode a request: {e}")))
}

type Sink = PcapWriter<BufWriter<Box<dyn Write>>>;

fn open(out: Option<&Path>, snaplen: u32, to: &str) -> Result<Sink, CliError> {
    let w: Box<dyn Write> = match out {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", p.display())))?,
        ),
        None => Box::new(io::stdout()),
    };
    let mut w = PcapWriter::new(BufWriter::new(w), snaplen).map_err(|e| write_err(e, to))?;
    // The header goes out at once, so a reader (`tcpdump -r -`) starts before the first frame.
    w.flush().map_err(|e| write_err(e, to))?;
    Ok(w)
}

/// Reads batches into `w` until done or told to stop, counting in `o`.
fn copy(
    client: &mut Client,
    id: u64,
    mut w: Sink,
    to: &str,
    o: &mut Outcome,
) -> Result<(), CliError> {
    let read = to_args(&CaptureRead {
        id,
        max: Some(CAPTURE_MAX_READ),
    })?;
    let mut final_reads = 0;
    loop {
        let stopping = STOP.load(Ordering::SeqCst);
        let reply = client.call(cmd::CAPTURE_READ, read.clone())?;
        let b: CaptureBatch = render::decode(cmd::CAPTURE_READ, reply)?;
        for p in &b.packets {
            let data = decode_hex(&p.data).ok_or_else(|| {
                CliError::Failed(
                    "the daemon sent a frame that is not hex; are vswitchctl and vswitchd the same version?"
                        .into(),
                )
            })?;
            w.record(p.ts_ns, p.orig_len, &data)
                .map_err(|e| write_err(e, to))?;
            o.written += 1;
        }
        if !b.packets.is_empty() {
            w.flush().map_err(|e| write_err(e, to))?;
        }
        o.missed = o.missed.max(b.missed);
        if b.done {
            o.ended = b.ended;
            return Ok(());
        }
        if stopping {
            // Collect what was taken before the signal, then finish.
            final_reads += 1;
            if b.packets.is_empty() || final_reads >= FINAL_READS {
                return Ok(());
            }
            continue;
        }
        if b.packets.is_empty() {
            std::thread::sleep(IDLE);
        }
    }
}
