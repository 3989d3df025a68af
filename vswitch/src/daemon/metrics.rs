//! `vswitchd --metrics ADDR:PORT`: the counters in Prometheus's text exposition format (version
//! 0.0.4) on `GET /metrics`, served by a thread of its own with a small HTTP/1.1 responder (one
//! request per connection, `Connection: close`).
//!
//! Concurrency contract: the metrics thread only reads, and never waits on a worker or messages
//! one. Worker counters are read with relaxed loads through the workers' `Arc<WorkerStats>`, so
//! a scrape may see one counter of a frame a worker is counting and not yet another; every
//! series is still monotonic. The port list (name, id, and the counter values the port started
//! from, as `port_counters_since` subtracts them) is an `Arc` snapshot that the control thread
//! replaces after every configuration change ([`View::set_ports`]); the mutex around it is held
//! only to swap or clone that `Arc`, never while rendering, and workers never touch it. The old
//! list is freed when the last scrape that cloned it finishes.

use super::{counters_since, sum_port};
use crate::counters::{drop_counters, event_index, Event, Gauge};
use control::proto::PortCounters;
use dataplane::counters::{WorkerEvent, WorkerStats};
use dataplane::port::PortId;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// Largest request line plus headers we read; a longer request gets 431.
const MAX_REQUEST: usize = 8192;
/// How long one read may wait for the client.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole request may take to arrive (a slow client cannot hold the thread longer).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing the reply may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// One port as the metrics thread sees it.
#[derive(Debug, Clone)]
pub struct PortView {
    /// The port's name (the `port` label).
    pub name: String,
    /// Its id (index into each worker's port counters).
    pub id: PortId,
    /// Counter values when the port was added (ids are reused; counters are not reset).
    pub base: PortCounters,
}

/// What the metrics thread reads: the workers' counters and the current port list.
pub struct View {
    workers: Vec<(u16, Arc<WorkerStats>)>,
    ports: Mutex<Arc<Vec<PortView>>>,
    started: Instant,
}

impl View {
    /// A view of these workers' counters (worker id, stats), with no ports yet.
    pub fn new(workers: Vec<(u16, Arc<WorkerStats>)>, started: Instant) -> Arc<View> {
        Arc::new(View {
            workers,
            ports: Mutex::new(Arc::new(Vec::new())),
            started,
        })
    }

    /// Replaces the port list (the control thread, after a change).
    pub fn set_ports(&self, ports: Vec<PortView>) {
        let new = Arc::new(ports);
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        *self.ports.lock().unwrap_or_else(|p| p.into_inner()) = new;
    }

    fn ports(&self) -> Arc<Vec<PortView>> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every series, in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.family(
            "vswitch_build_info",
            "gauge",
            "Version of the running vswitchd; always 1.",
        );
        out.sample(
            "vswitch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        out.family(
            "vswitch_uptime_seconds",
            "gauge",
            "Seconds since vswitchd started.",
        );
        out.sample_f64(
            "vswitch_uptime_seconds",
            &[],
            self.started.elapsed().as_secs_f64(),
        );

        let list = self.ports();
        let ports: Vec<(&str, PortCounters)> = list
            .iter()
            .map(|p| {
                let now = sum_port(self.workers.iter().map(|(_, w)| &**w), p.id);
                (p.name.as_str(), counters_since(&now, &p.base))
            })
            .collect();
        type Field = fn(&PortCounters) -> u64;
        let port_series: [(&str, &str, Field); 7] = [
            (
                "vswitch_port_rx_packets_total",
                "Frames received from the port.",
                |c| c.rx_packets,
            ),
            (
                "vswitch_port_rx_bytes_total",
                "Bytes received from the port.",
                |c| c.rx_bytes,
            ),
            (
                "vswitch_port_tx_packets_total",
                "Frames the port accepted for transmission.",
                |c| c.tx_packets,
            ),
            (
                "vswitch_port_tx_bytes_total",
                "Bytes the port accepted for transmission.",
                |c| c.tx_bytes,
            ),
            (
                "vswitch_port_tx_dropped_total",
                "Frames for the port that it refused (queue full, device gone).",
                |c| c.tx_dropped,
            ),
            (
                "vswitch_port_rx_errors_total",
                "Frames lost on receive (larger than a buffer, read errors).",
                |c| c.rx_errors,
            ),
            (
                "vswitch_port_tx_offload_dropped_total",
                "Frames dropped because their checksum or segmentation could not be done in software.",
                |c| c.tx_offload_dropped,
            ),
        ];
        for (name, help, field) in port_series {
            out.family(name, "counter", help);
            for (port, c) in &ports {
                out.sample(name, &[("port", port)], field(c));
            }
        }

        // Summed by name: two stages may share a reason's name, and a series must be unique.
        let mut drops: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, w) in &self.workers {
            for (i, name) in drop_counters() {
                let v = drops.entry(name).or_insert(0);
                *v = v.wrapping_add(w.pipeline.at(i).get());
            }
        }
        out.family(
            "vswitch_drops_total",
            "counter",
            "Frames the pipeline dropped, by reason, summed over workers.",
        );
        for (reason, v) in &drops {
            out.sample("vswitch_drops_total", &[("reason", reason)], *v);
        }
        out.family(
            "vswitch_events_total",
            "counter",
            "Things that happened to frames and MAC entries (not drops), summed over workers.",
        );
        // Every stage's events as the graph registered them (the router's among them), summed
        // by name, and the older names of `Event` that no stage registers, as before.
        let mut events: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, w) in &self.workers {
            for (i, name) in crate::counters::event_counters() {
                let v = events.entry(name).or_insert(0);
                *v = v.wrapping_add(w.pipeline.at(i).get());
            }
        }
        for e in Event::ALL {
            if !events.contains_key(e.name()) {
                let v = self.workers.iter().fold(0u64, |a, (_, w)| {
                    a.wrapping_add(w.pipeline.at(event_index(*e)).get())
                });
                events.insert(e.name(), v);
            }
        }
        for (event, v) in &events {
            out.sample("vswitch_events_total", &[("event", event)], *v);
        }

        let ids: Vec<String> = self.workers.iter().map(|(id, _)| id.to_string()).collect();
        let workers = || ids.iter().zip(self.workers.iter().map(|(_, w)| &**w));
        let ns = |w: &WorkerStats, e: WorkerEvent| w.event(e).get() as f64 / 1e9;
        out.family(
            "vswitch_worker_busy_seconds_total",
            "counter",
            "Seconds the worker spent in loop iterations that moved frames.",
        );
        for (id, w) in workers() {
            out.sample_f64(
                "vswitch_worker_busy_seconds_total",
                &[("worker", id)],
                ns(w, WorkerEvent::BusyNs),
            );
        }
        out.family(
            "vswitch_worker_idle_seconds_total",
            "counter",
            "Seconds the worker spent polling empty queues, yielding or asleep.",
        );
        for (id, w) in workers() {
            out.sample_f64(
                "vswitch_worker_idle_seconds_total",
                &[("worker", id)],
                ns(w, WorkerEvent::IdleNs),
            );
        }
        out.family(
            "vswitch_worker_loops_total",
            "counter",
            "Iterations of the worker's poll loop.",
        );
        for (id, w) in workers() {
            out.sample(
                "vswitch_worker_loops_total",
                &[("worker", id)],
                w.event(WorkerEvent::Loops).get(),
            );
        }
        out.family(
            "vswitch_worker_rx_packets_total",
            "counter",
            "Frames the worker received, over all its ports.",
        );
        for (id, w) in workers() {
            let rx = w
                .ports
                .iter()
                .fold(0u64, |a, p| a.wrapping_add(p.rx_packets.get()));
            out.sample("vswitch_worker_rx_packets_total", &[("worker", id)], rx);
        }
        out.family(
            "vswitch_fdb_entries",
            "gauge",
            "Entries in the worker's MAC table (learned and static), refreshed every second.",
        );
        for (id, w) in workers() {
            out.sample(
                "vswitch_fdb_entries",
                &[("worker", id)],
                w.gauges.at(Gauge::FdbEntries as usize).get(),
            );
        }
        out.family(
            "vswitch_neigh_entries",
            "gauge",
            "Entries in the worker's underlay neighbour table, refreshed every second.",
        );
        for (id, w) in workers() {
            out.sample(
                "vswitch_neigh_entries",
                &[("worker", id)],
                w.gauges.at(Gauge::NeighEntries as usize).get(),
            );
        }
        out.text
    }
}

/// Text exposition output: `# HELP` and `# TYPE` lines, then samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(k);
            self.text.push_str("=\"");
            escape_label(&mut self.text, v);
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A request as far as we care: whether to send the body, or the status to refuse it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// `GET /metrics` (`head`: `HEAD /metrics`, headers only).
    Metrics { head: bool },
    /// Refused with this status.
    Refuse(Status),
}

/// The statuses we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadersTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Where the request head (request line and headers) ends, if it has arrived: just past the
/// blank line (`\r\n\r\n`, or a bare `\n\n` from lenient clients).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Judges a complete request head. Only the request line matters; headers are read and ignored.
fn parse(head: &[u8]) -> Parsed {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Some(line) = head
        .get(..line_end)
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return Parsed::Refuse(Status::BadRequest);
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Refuse(Status::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Parsed::Refuse(Status::BadRequest);
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path != "/metrics" {
        return Parsed::Refuse(Status::NotFound);
    }
    match method {
        "GET" => Parsed::Metrics { head: false },
        "HEAD" => Parsed::Metrics { head: true },
        _ => Parsed::Refuse(Status::MethodNotAllowed),
    }
}

/// A whole response.
fn response(status: Status, body: &str, send_body: bool) -> Vec<u8> {
    let (ctype, body) = match status {
        Status::Ok => (CONTENT_TYPE, body),
        Status::MethodNotAllowed => ("text/plain", "only GET and HEAD are served\n"),
        Status::NotFound => ("text/plain", "not found; metrics are at /metrics\n"),
        _ => ("text/plain", "bad request\n"),
    };
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        status.line(),
        body.len()
    )
    .into_bytes();
    if send_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Reads one request head from `s`, within [`MAX_REQUEST`] bytes and [`REQUEST_DEADLINE`].
fn read_head(s: &mut TcpStream) -> Result<Parsed, io::Error> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        let Some(free) = buf.get_mut(len..).filter(|f| !f.is_empty()) else {
            return Ok(Parsed::Refuse(Status::HeadersTooLarge));
        };
        let n = match s.read(free) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Parsed::Refuse(Status::RequestTimeout))
            }
            Err(e) => return Err(e),
        };
        len = (len + n).min(buf.len());
        let got = buf.get(..len).unwrap_or_default();
        if let Some(end) = head_end(got) {
            return Ok(parse(got.get(..end).unwrap_or(got)));
        }
        if Instant::now() >= deadline {
            return Ok(Parsed::Refuse(Status::RequestTimeout));
        }
    }
}

/// Answers one connection.
fn serve_one(mut s: TcpStream, view: &View) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let reply = match read_head(&mut s)? {
        Parsed::Metrics { head } => response(Status::Ok, &view.render(), !head),
        Parsed::Refuse(st) => response(st, "", true),
    };
    s.write_all(&reply)?;
    s.flush()?;
    s.shutdown(std::net::Shutdown::Write)
}

/// Binds the metrics listener (before the workers start, so that a bad address stops the start).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen for metrics on {addr}: {e}; give --metrics a free local address and port, e.g. 127.0.0.1:9477")
    })?;
    l.set_nonblocking(true)
        .map_err(|e| format!("cannot set up the metrics listener on {addr}: {e}"))?;
    Ok(l)
}

/// The metrics thread; stopped (and joined) by [`Server::stop`] or on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving `listener` (from [`bind`]) from `view`.
    pub fn spawn(listener: TcpListener, view: Arc<View>) -> Result<Server, String> {
        let fail = |e: io::Error| format!("cannot start the metrics thread: {e}");
        let addr = listener.local_addr().map_err(fail)?;
        let poll = Poll::new().map_err(fail)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(fail)?);
        poll.registry()
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || run(poll, listener, &view, &flag))
            .map_err(fail)?;
        tracing::info!("serving metrics on http://{addr}/metrics");
        Ok(Server {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most one request's timeouts).
    pub fn stop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.waker.wake() {
            // Without a wake-up the thread would block in poll: leave it to exit with the process.
            tracing::warn!(error = %e, "cannot wake the metrics thread; leaving it");
            return;
        }
        if t.join().is_err() {
            tracing::error!("the metrics thread panicked");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut poll: Poll, listener: TcpListener, view: &View, stop: &AtomicBool) {
    let mut events = Events::with_capacity(8);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "metrics thread cannot poll; metrics are off");
            return;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Edge-triggered: take every pending connection. Each is answered before the next, so
        // the bound on one is the bound on the others' wait.
        loop {
            match listener.accept() {
                Ok((s, peer)) => {
                    if let Err(e) = serve_one(s, view) {
                        tracing::debug!(peer = %peer, error = %e, "metrics request failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a metrics connection");
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> Arc<View> {
        let w = Arc::new(WorkerStats::new(crate::counters::counters(), 8));
        w.port(3).rx_packets.add(10);
        w.port(3).rx_bytes.add(1000);
        w.port(3).tx_packets.add(4);
        w.event(WorkerEvent::BusyNs).add(1_500_000_000);
        w.event(WorkerEvent::IdleNs).add(500_000_000);
        w.gauges.at(Gauge::FdbEntries as usize).set(2);
        let (first_drop, _) = drop_counters().next().unwrap();
        w.pipeline.at(first_drop).add(7);
        let v = View::new(vec![(0, w)], Instant::now());
        v.set_ports(vec![PortView {
            name: "tap\"0".into(),
            id: 3,
            base: PortCounters {
                rx_packets: 4,
                ..PortCounters::default()
            },
        }]);
        v
    }

    #[test]
    fn renders_every_family_with_help_type_and_samples() {
        let text = view().render();
        assert!(text.contains("# TYPE vswitch_port_rx_packets_total counter\n"));
        assert!(
            text.contains("vswitch_port_rx_packets_total{port=\"tap\\\"0\"} 6\n"),
            "{text}"
        );
        assert!(text.contains("vswitch_port_tx_packets_total{port=\"tap\\\"0\"} 4\n"));
        assert!(text.contains("vswitch_worker_busy_seconds_total{worker=\"0\"} 1.5\n"));
        assert!(text.contains("vswitch_worker_idle_seconds_total{worker=\"0\"} 0.5\n"));
        assert!(text.contains("vswitch_fdb_entries{worker=\"0\"} 2\n"));
        assert!(text.contains("vswitch_worker_rx_packets_total{worker=\"0\"} 10\n"));
        assert!(text.contains("vswitch_events_total{event=\"forwarded\"} 0\n"));
        let first = drop_counters().next().unwrap().1;
        assert!(text.contains(&format!("vswitch_drops_total{{reason=\"{first}\"}} 7\n")));
        assert!(text.contains(&format!(
            "vswitch_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        // Every sample belongs to a family announced just before it, and no series repeats.
        let mut seen = std::collections::HashSet::new();
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let series = line.rsplit_once(' ').unwrap().0;
            assert!(series.starts_with(family), "{line} outside {family}");
            assert!(seen.insert(series.to_string()), "repeated: {series}");
        }
    }

    #[test]
    fn requests_are_judged_by_method_and_path() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Metrics { head: false }
        );
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Parsed::Metrics { head: false }
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Metrics { head: true }
        );
        assert_eq!(
            p("GET / HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(Status::NotFound)
        );
        assert_eq!(
            p("GET /metricsx HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(Status::NotFound)
        );
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(Status::MethodNotAllowed)
        );
        assert_eq!(
            p("GET /metrics\r\n\r\n"),
            Parsed::Refuse(Status::BadRequest)
        );
        assert_eq!(
            p("GET /metrics SMTP\r\n\r\n"),
            Parsed::Refuse(Status::BadRequest)
        );
        assert_eq!(
            p("GET  /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(Status::BadRequest)
        );
        assert_eq!(
            parse(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            Parsed::Refuse(Status::BadRequest)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b" \r\n/GETmetricsHTP1.?\xff";
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    ALPHABET[x as usize % ALPHABET.len()]
                })
                .collect();
            let _ = head_end(&bytes);
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn responses_carry_length_type_and_close() {
        let r = String::from_utf8(response(Status::Ok, "abc\n", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Type: text/plain; version=0.0.4\r\n"));
        assert!(r.contains("Content-Length: 4\r\n") && r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nabc\n"));
        let h = String::from_utf8(response(Status::Ok, "abc\n", false)).unwrap();
        assert!(h.contains("Content-Length: 4\r\n") && h.ends_with("\r\n\r\n"));
        let m = String::from_utf8(response(Status::MethodNotAllowed, "", true)).unwrap();
        assert!(m.starts_with("HTTP/1.1 405 ") && m.contains("Allow: GET, HEAD\r\n"));
    }

    fn fetch(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_over_tcp_and_stops() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = l.local_addr().unwrap();
        let mut srv = Server::spawn(l, view()).unwrap();
        let ok = fetch(a, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains("vswitch_uptime_seconds "));
        let body = ok.split_once("\r\n\r\n").unwrap().1;
        assert!(ok.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(fetch(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(fetch(a, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        let huge = vec![b'a'; MAX_REQUEST];
        assert!(fetch(a, &huge).starts_with("HTTP/1.1 431 "));
        // A client that connects and says nothing is cut off; the next one is still served.
        let idle = TcpStream::connect(a).unwrap();
        assert!(fetch(a, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        drop(idle);
        srv.stop();
        assert!(TcpStream::connect(a).is_err(), "still listening after stop");
    }

    #[test]
    fn a_taken_address_is_a_clear_error() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let e = bind(l.local_addr().unwrap()).unwrap_err();
        assert!(
            e.contains("cannot listen for metrics") && e.contains("--metrics"),
            "{e}"
        );
    }
}
