//! The control socket: JSON lines over a Unix stream socket, served with mio on the control
//! thread. A malformed, oversized or unknown request gets an error reply; the connection and the
//! daemon carry on. Peers are checked with `SO_PEERCRED`.

use super::{os, Daemon};
use control::proto::{ErrorBody, ErrorCode, Reply, Request, MAX_LINE};
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// The cluster store agent has a batch for the daemon.
const STORE: Token = Token(2);
const FIRST_CONN: usize = 3;
/// Most connections served at once; more are refused with an error line.
const MAX_CONNS: usize = 256;
/// Connections only root may open: others are refused once `MAX_CONNS - ROOT_RESERVE` are
/// open, so that no other user can lock root out.
const ROOT_RESERVE: usize = 16;
/// Most connections one user other than root may hold at once.
const PER_USER: usize = 32;

/// How the control socket treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct ControlLimits {
    /// A connection that sends nothing for this long is closed (with an error line saying
    /// so); `None`: never.
    pub idle: Option<Duration>,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            idle: Some(Duration::from_secs(300)),
        }
    }
}
/// Turns (one request each) of other users' connections served between two polls at most, so
/// that a request of root's, served first, waits for at most this many of theirs.
const TURNS_PER_POLL: usize = 4;
/// Reply bytes buffered for a client before its further requests wait.
const HIGH_WATER: usize = 256 << 10;
/// Reply bytes buffered for all clients together before those with replies still unread
/// wait too (each reply is bounded: large listings come in pages).
const ALL_HIGH_WATER: usize = 32 << 20;

struct Conn {
    /// Its poll token, which also names it to the daemon (captures end with it).
    token: usize,
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Inside an over-long line: discard until its newline.
    discarding: bool,
    writable_registered: bool,
    /// The peer's user id (for the per-user limit).
    uid: u32,
    /// When it last sent anything.
    last_active: Instant,
    /// Bytes at the start of `inbuf` already known to hold no newline.
    scanned: usize,
    /// Root's (or the daemon's own user's): served before everyone else's.
    first: bool,
    /// In a ready queue.
    queued: bool,
}

/// Binds the control socket: creates its directory, replaces a stale socket file (but never one
/// a live daemon answers on), and sets mode 0660 and the group.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another vswitchd is answering on {}; stop it or pass another --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    os::chmod_chgrp(path, 0o660, gid)
        .map_err(|e| format!("cannot set permissions of {}: {e}", path.display()))?;
    Ok(l)
}

/// How the daemon was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or SIGINT: remove the devices the daemon holds, keep the state.
    Clean,
    /// SIGUSR1, for an upgrade: keep the devices too (TAPs persist, so containers keep their
    /// interfaces and the next daemon re-attaches to them).
    KeepDevices,
}

/// Which stop the signal bytes waiting in the pipe ask for.
fn stop_kind(sig: &std::os::fd::OwnedFd) -> Stop {
    let mut buf = [0u8; 16];
    let mut kind = Stop::Clean;
    loop {
        // SAFETY: reading into a valid 16-byte buffer from a descriptor we own.
        let n = unsafe { libc::read(sig.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        if buf.iter().take(n).any(|&b| i32::from(b) == libc::SIGUSR1) {
            kind = Stop::KeepDevices;
        }
    }
    kind
}

/// Serves the socket until SIGTERM, SIGINT (a clean stop) or SIGUSR1 (a stop that keeps the
/// devices, for an upgrade).
pub fn serve(
    d: &mut Daemon,
    mut listener: UnixListener,
    gid: Option<u32>,
    limits: ControlLimits,
) -> io::Result<Stop> {
    let mut poll = Poll::new()?;
    let sig = os::signal_pipe()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut SourceFd(&sig.as_raw_fd()), SIGNALS, Interest::READABLE)?;
    let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), STORE)?);
    d.start_store(Box::new(move || {
        let _ = waker.wake();
    }))
    .map_err(io::Error::other)?;
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_token = FIRST_CONN;
    let mut events = Events::with_capacity(128);
    let mut last_sample = Instant::now();
    let my_uid = os::euid();
    // Connections with requests still waiting: root's, and everyone else's, each in turn.
    let mut ready = Ready::default();
    loop {
        let wait = if ready.is_empty() {
            Duration::from_secs(1).saturating_sub(last_sample.elapsed())
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            d.sample_rates();
            d.service_health();
            last_sample = Instant::now();
            if let Some(idle) = limits.idle {
                close_idle(d, &poll, &mut conns, idle);
            }
            d.tell_store_all();
            d.flush_state();
        }
        for ev in events.iter() {
            match ev.token() {
                STORE => d.serve_store(),
                SIGNALS => {
                    let kind = stop_kind(&sig);
                    tracing::info!(?kind, "signal received; shutting down");
                    return Ok(kind);
                }
                LISTENER => loop {
                    let (mut stream, _) = match listener.accept() {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            break;
                        }
                    };
                    let (allowed, uid) = match os::peer_cred(stream.as_raw_fd()) {
                        Ok((uid, pgid, pid)) => (
                            uid == 0
                                || uid == my_uid
                                || gid.is_some_and(|g| {
                                    g == pgid || os::has_supplementary_group(pid, g)
                                }),
                            uid,
                        ),
                        Err(_) => (false, u32::MAX),
                    };
                    let refusal = if !allowed {
                        Some(ErrorBody::new(
                            ErrorCode::PermissionDenied,
                            "permission denied: only root and the daemon's --group may control vswitchd",
                        ))
                    } else {
                        admit(&conns, uid)
                    };
                    if let Some(msg) = refusal {
                        if allowed {
                            tracing::warn!(uid, error = %msg.message, "control connection refused");
                        }
                        let mut line = serde_json::to_vec(&Reply::err(0, msg)).unwrap_or_default();
                        line.push(b'\n');
                        let _ = stream.write(&line);
                        continue;
                    }
                    let token = next_token;
                    next_token += 1;
                    if poll
                        .registry()
                        .register(&mut stream, Token(token), Interest::READABLE)
                        .is_ok()
                    {
                        conns.insert(
                            token,
                            Conn {
                                token,
                                stream,
                                inbuf: Vec::new(),
                                out: Vec::new(),
                                discarding: false,
                                writable_registered: false,
                                uid,
                                last_active: Instant::now(),
                                scanned: 0,
                                first: uid == 0 || uid == my_uid,
                                queued: false,
                            },
                        );
                    }
                },
                // Root's connections at once; everyone else's in turn, below.
                Token(t) => match conns.get_mut(&t) {
                    Some(c) if c.first => turn(d, &poll, &mut conns, &mut ready, t),
                    Some(c) => ready.queue(c),
                    None => {}
                },
            }
        }
        // Root's connections with more to do, all of them; then at most TURNS_PER_POLL of the
        // others, round robin, before the next poll (which then does not wait): a request of
        // root's never waits behind everyone else's.
        for t in std::mem::take(&mut ready.root) {
            if let Some(c) = conns.get_mut(&t) {
                c.queued = false;
            }
            turn(d, &poll, &mut conns, &mut ready, t);
        }
        for _ in 0..TURNS_PER_POLL {
            let Some(t) = ready.others.pop_front() else {
                break;
            };
            if let Some(c) = conns.get_mut(&t) {
                c.queued = false;
            }
            turn(d, &poll, &mut conns, &mut ready, t);
        }
    }
}

/// Connections with requests waiting for a turn.
#[derive(Default)]
struct Ready {
    root: Vec<usize>,
    others: std::collections::VecDeque<usize>,
}

impl Ready {
    fn is_empty(&self) -> bool {
        self.root.is_empty() && self.others.is_empty()
    }

    /// Queues `c` for a turn, unless it already waits for one.
    fn queue(&mut self, c: &mut Conn) {
        if c.queued {
            return;
        }
        c.queued = true;
        if c.first {
            self.root.push(c.token);
        } else {
            self.others.push_back(c.token);
        }
    }
}

/// Serves connection `t` one turn (see [`service`]), then closes it, or sets its interest in
/// writability by whether replies wait, and queues it in `ready` when it has more to do.
fn turn(
    d: &mut Daemon,
    poll: &Poll,
    conns: &mut HashMap<usize, Conn>,
    ready: &mut Ready,
    t: usize,
) {
    let others: usize = conns
        .iter()
        .filter(|(&k, _)| k != t)
        .map(|(_, c)| c.out.len())
        .sum();
    let (close, more) = match conns.get_mut(&t) {
        Some(c) => service(d, c, others < ALL_HIGH_WATER),
        None => (false, false),
    };
    if close {
        if let Some(mut c) = conns.remove(&t) {
            let _ = poll.registry().deregister(&mut c.stream);
        }
        d.connection_closed(t);
        return;
    }
    let Some(c) = conns.get_mut(&t) else {
        return;
    };
    if more {
        ready.queue(c);
    }
    let want_write = !c.out.is_empty();
    if want_write != c.writable_registered {
        let interest = if want_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = poll
            .registry()
            .reregister(&mut c.stream, Token(t), interest);
        c.writable_registered = want_write;
    }
}

/// Whether a new connection from `uid` may be served, given those open; the refusal if not.
fn admit(conns: &HashMap<usize, Conn>, uid: u32) -> Option<ErrorBody> {
    if conns.len() >= MAX_CONNS {
        return Some(ErrorBody::new(
            ErrorCode::System,
            format!("too many control connections ({MAX_CONNS}); close some and retry"),
        ));
    }
    if uid == 0 {
        return None;
    }
    if conns.len() >= MAX_CONNS - ROOT_RESERVE {
        return Some(ErrorBody::new(
            ErrorCode::System,
            format!(
                "too many control connections ({}; the last {ROOT_RESERVE} are kept for root); \
                 close some and retry",
                conns.len()
            ),
        ));
    }
    let mine = conns.values().filter(|c| c.uid == uid).count();
    (mine >= PER_USER).then(|| {
        ErrorBody::new(
            ErrorCode::System,
            format!(
                "too many control connections from user {uid} (most {PER_USER} each); close \
                 some and retry"
            ),
        )
    })
}

/// Closes the connections that sent nothing for `idle`, telling each why.
fn close_idle(d: &mut Daemon, poll: &Poll, conns: &mut HashMap<usize, Conn>, idle: Duration) {
    let stale: Vec<usize> = conns
        .iter()
        .filter(|(_, c)| c.last_active.elapsed() >= idle)
        .map(|(&t, _)| t)
        .collect();
    for t in stale {
        let Some(mut c) = conns.remove(&t) else {
            continue;
        };
        let msg = ErrorBody::new(
            ErrorCode::System,
            format!(
                "connection closed after {} s without a request; reconnect to go on",
                idle.as_secs()
            ),
        );
        let mut line = serde_json::to_vec(&Reply::err(0, msg)).unwrap_or_default();
        line.push(b'\n');
        // Best effort, never blocking: the socket is non-blocking.
        let _ = c.stream.write(&line);
        let _ = poll.registry().deregister(&mut c.stream);
        d.connection_closed(t);
    }
}

/// Reads, answers and writes for one connection: one request per turn, so that a client with
/// many requests queued (or slow ones) delays every other client by one request at most.
/// Returns whether to close it, and whether it has more to do (another turn is due).
///
/// Backpressure: while more than [`HIGH_WATER`] bytes of replies wait for a client that does not
/// read them, its requests are neither answered nor read; the writable event that comes when it
/// reads resumes both. A pipelining client can so never make the daemon buffer without bound.
///
/// `room`: whether the replies all other clients leave unread are within [`ALL_HIGH_WATER`];
/// when they are not, a client with unread replies of its own waits as well, so many slow
/// readers together cannot make the daemon buffer without bound either.
fn service(d: &mut Daemon, c: &mut Conn, room: bool) -> (bool, bool) {
    let mut eof = false;
    let mut buf = [0u8; 16384];
    let full = |c: &Conn| c.out.len() > HIGH_WATER || (!room && !c.out.is_empty());
    loop {
        if flush(c).is_err() {
            return (true, false);
        }
        if full(c) {
            break;
        }
        if process_one(d, c) {
            return (flush(c).is_err(), true);
        }
        // No complete line buffered: read more.
        match c.stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                c.last_active = Instant::now();
                c.inbuf.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return (true, false),
        }
    }
    if flush(c).is_err() {
        return (true, false);
    }
    (eof && c.out.is_empty(), false)
}

/// Takes one complete line from `c`'s input and answers it (or discards an over-long one);
/// returns whether there was one.
fn process_one(d: &mut Daemon, c: &mut Conn) -> bool {
    // Only what arrived since the last look can hold the newline: a long line read in many
    // pieces is scanned once, not once per piece.
    let from = c.scanned.min(c.inbuf.len());
    let Some(at) = c.inbuf[from..].iter().position(|&b| b == b'\n') else {
        c.scanned = c.inbuf.len();
        if c.inbuf.len() > MAX_LINE {
            c.inbuf.clear();
            c.scanned = 0;
            if !c.discarding {
                c.discarding = true;
                push_reply(c, &Reply::err(0, too_long()));
            }
        }
        return false;
    };
    let i = from + at;
    c.scanned = 0;
    let line: Vec<u8> = c.inbuf.drain(..=i).collect();
    if c.discarding {
        c.discarding = false;
        return true;
    }
    if i > MAX_LINE {
        push_reply(c, &Reply::err(0, too_long()));
        return true;
    }
    d.set_connection(c.token);
    let reply = answer(d, &line[..i]);
    push_reply(c, &reply);
    true
}

fn too_long() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::TooLong,
        format!("request line longer than {MAX_LINE} bytes; send one JSON object per line"),
    )
}

fn push_reply(c: &mut Conn, reply: &Reply) {
    match serde_json::to_vec(reply) {
        Ok(mut v) => {
            v.push(b'\n');
            c.out.extend_from_slice(&v);
        }
        Err(e) => tracing::error!(error = %e, "cannot encode reply"),
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Parses and handles one request line.
pub fn answer(d: &mut Daemon, line: &[u8]) -> Reply {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Reply::err(
            0,
            ErrorBody::new(
                ErrorCode::BadRequest,
                "empty request line; send one JSON object per line",
            ),
        );
    }
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            // Echo the id if the line is JSON with one, so the client can match the reply.
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                .unwrap_or(0);
            return Reply::err(
                id,
                ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("malformed request ({e}); expected {{\"id\": N, \"cmd\": \"...\", \"args\": {{...}}}}"),
                ),
            );
        }
    };
    match d.handle(&req) {
        Ok(v) => Reply::ok(req.id, v),
        Err(e) => {
            tracing::info!(cmd = %req.cmd, error = %e.message, "request refused");
            Reply::err(req.id, e)
        }
    }
}
