//! Poll-mode workers: one thread per core, pinned, owning its ports' queues, its buffer cache and
//! its pipeline state; no locks and no shared writes per packet.
//!
//! Configuration is published RCU-style by message passing: the control thread builds an
//! immutable snapshot (`Arc<P::Config>`) and sends it to every worker; a worker takes it at the
//! top of a loop iteration (its quiescent point), so a burst is processed against exactly one
//! snapshot, and stores the command's sequence number in [`WorkerShared::applied`]. Once every
//! worker has applied a sequence, nothing refers to older snapshots any more (the grace period);
//! the old `Arc` is freed by whoever drops it last. The same channel carries port attach and
//! detach and control requests (MAC table dumps), so they are ordered with configuration.
//!
//! Idle back-off: while traffic flows the worker busy-polls. After [`SPIN_TIME`] without
//! traffic it yields the CPU between polls (a worker that shares its core, with another switch or
//! with the containers it serves, hands it over within that time, whatever an empty poll costs); after [`IDLE_BEFORE_SLEEP`] without traffic it
//! sleeps in epoll (mio) on its ports' descriptors and its command waker, waking on the first
//! frame, the first command, or the next housekeeping tick. The descriptors are in the epoll set
//! only while the worker sleeps: a socket with a waiter costs the kernel a wakeup attempt (a
//! locked wait-queue walk) on every frame it queues or frees, which on AF_XDP's copy-mode
//! transmit path alone took 7% of the worker's core.

use crate::burst::Burst;
use crate::capture::{self, Capture, Direction};
use crate::counters::{WorkerEvent, WorkerStats};
use crate::pool::{Buf, Pool, PoolCache};
use crate::port::{Port, PortId, PortIo, MAX_PORTS};
use crate::swoffload::{self, TxCaps};
use crossbeam::channel::{self, Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time without traffic spent busy-polling before the worker starts yielding between polls.
/// Counted in time, not in empty polls: with plain TAP reads (a system call per port per poll)
/// 256 empty polls took about 250 us, during which a switch sharing the core with another one
/// kept it from the frames it was waiting for; through io_uring the same polls took about 15.
pub const SPIN_TIME: Duration = Duration::from_micros(20);
/// Time without traffic before the worker sleeps on its descriptors.
pub const IDLE_BEFORE_SLEEP: Duration = Duration::from_millis(2);
/// Longest sleep (housekeeping such as MAC aging runs at least this often).
pub const MAX_SLEEP: Duration = Duration::from_millis(500);

const WAKE_TOKEN: Token = Token(usize::MAX);

/// The feature pipeline a worker runs. It does no I/O of its own: frames come in as bursts and
/// leave through [`Ports::enqueue`]; time comes in as [`Context::now`].
pub trait Pipeline: Send + 'static {
    /// The configuration snapshot type.
    type Config: Send + Sync + 'static;
    /// Requests from the control thread (answered through channels inside the request).
    type Request: Send + 'static;
    /// Number of pipeline counters (the size of its counter layout).
    fn counters(&self) -> usize;

    /// Processes a burst received on `port`; every buffer must be enqueued or freed.
    fn rx(&mut self, cx: &mut Context<'_>, cfg: &Self::Config, port: PortId, burst: &mut Burst);
    /// A new snapshot was published (it is `cfg`); reconcile state with it.
    fn configure(&mut self, cx: &mut Context<'_>, cfg: &Self::Config);
    /// Called about once per second (and after every sleep) for timers such as aging.
    fn tick(&mut self, cx: &mut Context<'_>, cfg: &Self::Config);
    /// Handles a control request.
    fn request(&mut self, cx: &mut Context<'_>, cfg: &Self::Config, req: Self::Request);
    /// Runs what other workers handed to the pipeline itself (not to a port: a NAT session's
    /// return traffic that arrived on another worker); returns how many frames. Called once
    /// per loop iteration, so it must cost next to nothing when there is none.
    fn poll(&mut self, _cx: &mut Context<'_>, _cfg: &Self::Config) -> usize {
        0
    }
    /// Whether such work waits (looked at once more before the worker sleeps, as its inbound
    /// rings are: see `port::remote` for the wakeup contract a sender follows).
    fn pending(&self) -> bool {
        false
    }
}

/// What a pipeline stage may touch.
pub struct Context<'a> {
    /// The worker's buffer cache.
    pub cache: &'a mut PoolCache,
    /// The worker's output queues.
    pub ports: &'a mut Ports,
    /// The worker's counters.
    pub stats: &'a WorkerStats,
    /// Monotonic seconds.
    pub now: u64,
    /// Monotonic nanoseconds (the same clock as `now`, finer: for timestamps and timeouts that
    /// need better than a second).
    pub now_ns: u64,
    /// Worker index.
    pub worker: u16,
}

struct Slot {
    /// The port this slot transmits on.
    port: PortId,
    io: PortIo,
    pending: Burst,
    /// What the port can transmit (read once, at attach).
    caps: TxCaps,
    /// Captures of what this port receives here (empty almost always: one branch per burst).
    rx_taps: Vec<Arc<Capture>>,
    /// Captures of what this worker transmits on this port.
    tx_taps: Vec<Arc<Capture>>,
}

impl Slot {
    fn new(port: PortId, io: PortIo) -> Slot {
        let caps = io.tx_caps();
        Slot {
            port,
            io,
            pending: Burst::new(),
            caps,
            rx_taps: Vec::new(),
            tx_taps: Vec::new(),
        }
    }

    /// Adds `b` to the pending burst, transmitting the burst first if it is full.
    #[inline]
    fn push(&mut self, cache: &mut PoolCache, c: &crate::counters::PortCounters, b: Buf) {
        if let Err(b) = self.pending.push(b) {
            self.send(cache, c, true);
            // Cannot fail: send leaves the burst empty.
            let _ = self.pending.push(b);
        }
    }

    /// Transmits the pending burst, showing it to the transmit taps first. Once per burst, and
    /// out of line, so that the per-frame [`Slot::push`] and [`Ports::enqueue`] stay small.
    /// `more`: frames follow before the flush (the port may hold an open merge back for them,
    /// [`crate::port::Port::tx_burst_more`]; the flush's send, without `more`, sends it).
    #[inline(never)]
    fn send(&mut self, cache: &mut PoolCache, c: &crate::counters::PortCounters, more: bool) {
        if !self.tx_taps.is_empty() {
            let ts = capture::realtime_ns();
            for t in &self.tx_taps {
                t.tap(
                    cache.pool(),
                    self.pending.bufs(),
                    self.port,
                    Direction::Tx,
                    ts,
                );
            }
        }
        if more {
            self.io.tx_burst_more(cache, &mut self.pending, c);
        } else {
            self.io.tx_burst(cache, &mut self.pending, c);
        }
    }
}

/// The ports a worker can transmit on, each with a pending output burst.
pub struct Ports {
    slots: Vec<Option<Slot>>,
    dirty: Vec<PortId>,
}

/// Rare: a frame from a TAP with offloads, headed somewhere without them, finished in software
/// (kept out of line so that the common path of [`Ports::enqueue`] stays small).
#[cold]
#[inline(never)]
fn finish_offload(
    cache: &mut PoolCache,
    slot: &mut Slot,
    c: &crate::counters::PortCounters,
    b: crate::pool::Buf,
) {
    match swoffload::resolve(cache, b, slot.caps, |cache, s| slot.push(cache, c, s)) {
        Ok(r) if r.cut => c.tx_segmented.inc(),
        Ok(_) => {}
        Err(_) => c.tx_offload_dropped.inc(),
    }
}

impl Ports {
    fn new() -> Ports {
        Ports {
            slots: (0..MAX_PORTS).map(|_| None).collect(),
            dirty: Vec::with_capacity(MAX_PORTS),
        }
    }

    /// Whether this worker can transmit on `port`.
    #[inline]
    pub fn has(&self, port: PortId) -> bool {
        matches!(self.slots.get(port as usize), Some(Some(_)))
    }

    /// Queues `b` for transmission on `port`; flushes the port's burst when it fills. Returns
    /// `false` (and frees `b`) when this worker has no queue for `port`.
    #[inline]
    pub fn enqueue(
        &mut self,
        cache: &mut PoolCache,
        stats: &WorkerStats,
        port: PortId,
        b: crate::pool::Buf,
    ) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(port as usize) else {
            cache.free(b);
            return false;
        };
        if slot.pending.is_empty() {
            self.dirty.push(port);
        }
        let c = stats.port(port);
        let pool = cache.pool();
        if slot.caps.must_finish(pool, &b) {
            finish_offload(cache, slot, c, b);
            return true;
        }
        slot.push(cache, c, b);
        true
    }

    /// Transmits every pending burst.
    pub fn flush(&mut self, cache: &mut PoolCache, stats: &WorkerStats) {
        for port in self.dirty.drain(..) {
            if let Some(Some(slot)) = self.slots.get_mut(port as usize) {
                if !slot.pending.is_empty() {
                    slot.send(cache, stats.port(port), false);
                }
            }
        }
    }

    /// Gives `port` a new queue; the old one, if any, comes back (its pending frames freed).
    fn attach(&mut self, cache: &mut PoolCache, port: PortId, io: PortIo) -> Option<PortIo> {
        let slot = self.slots.get_mut(port as usize)?;
        let mut new = Slot::new(port, io);
        let old = slot.take();
        let old = old.map(|mut s| {
            s.pending.free_all(cache);
            // A new queue for the same port keeps the port's captures.
            new.rx_taps = std::mem::take(&mut s.rx_taps);
            new.tx_taps = std::mem::take(&mut s.tx_taps);
            s.io
        });
        *slot = Some(new);
        old
    }

    /// Starts showing `port`'s frames to `cap` (in the directions its filter names).
    fn tap(&mut self, port: PortId, cap: Arc<Capture>) {
        let Some(Some(slot)) = self.slots.get_mut(port as usize) else {
            return;
        };
        let f = cap.filter();
        if f.rx && !slot.rx_taps.iter().any(|t| Arc::ptr_eq(t, &cap)) {
            slot.rx_taps.push(cap.clone());
        }
        if f.tx && !slot.tx_taps.iter().any(|t| Arc::ptr_eq(t, &cap)) {
            slot.tx_taps.push(cap);
        }
    }

    /// Stops showing frames to `cap`, on every port.
    fn untap(&mut self, cap: &Arc<Capture>) {
        for slot in self.slots.iter_mut().flatten() {
            slot.rx_taps.retain(|t| !Arc::ptr_eq(t, cap));
            slot.tx_taps.retain(|t| !Arc::ptr_eq(t, cap));
        }
    }

    /// Takes `port` away; its pending frames are freed. The caller then calls
    /// [`Port::release`] (the descriptor is in no epoll set: that happens only during a sleep).
    fn detach(&mut self, cache: &mut PoolCache, port: PortId) -> Option<PortIo> {
        let mut s = self.slots.get_mut(port as usize)?.take()?;
        s.pending.free_all(cache);
        Some(s.io)
    }
}

/// A command from the control thread.
pub enum Command<P: Pipeline> {
    /// Publish a new configuration snapshot.
    Config(Arc<P::Config>),
    /// Give the worker a port queue; with `rx` it also polls it for receive.
    Attach {
        /// Port id.
        port: PortId,
        /// The queue.
        io: PortIo,
        /// Whether this worker polls it for receive.
        rx: bool,
    },
    /// Take a port away (its queue is closed, its inbound rings dropped).
    Detach(PortId),
    /// Transmits for `port` that other workers hand over: drain `ring` and send on the port's
    /// queue here.
    Inbound {
        /// Port id.
        port: PortId,
        /// The receiving end of a [`crate::port::remote::RemoteTx`]'s ring.
        ring: crate::ring::Consumer,
    },
    /// Show the frames `port` receives (polled here) and transmits (from here) to a capture;
    /// its filter says which directions. A port this worker does not hold is ignored.
    Tap {
        /// Port id.
        port: PortId,
        /// The capture ring.
        capture: Arc<Capture>,
    },
    /// Stop showing frames to this capture, on every port (the worker drops its reference).
    Untap(Arc<Capture>),
    /// A pipeline request.
    Request(P::Request),
    /// End the worker loop.
    Stop,
}

/// State a worker shares with the control thread.
#[derive(Default)]
pub struct WorkerShared {
    /// Sequence number of the last command applied.
    pub applied: AtomicU64,
    /// Core the worker is pinned to.
    pub core: AtomicU64,
    /// Whether pinning succeeded.
    pub pinned: AtomicBool,
    /// Receive queues polled.
    pub rx_queues: AtomicU64,
    /// Set while the worker sleeps in epoll (see `port::remote` for the wakeup contract).
    pub sleeping: AtomicBool,
}

/// A worker as the control thread holds it.
pub struct WorkerHandle<P: Pipeline> {
    /// Worker index.
    pub id: u16,
    tx: Sender<(u64, Command<P>)>,
    waker: Arc<Waker>,
    next_seq: AtomicU64,
    /// Shared state.
    pub shared: Arc<WorkerShared>,
    /// Counters.
    pub stats: Arc<WorkerStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<P: Pipeline> WorkerHandle<P> {
    /// Sends a command and wakes the worker; returns its sequence number.
    pub fn send(&self, cmd: Command<P>) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        // A send fails only if the worker has exited; then there is nothing to configure.
        let _ = self.tx.send((seq, cmd));
        let _ = self.waker.wake();
        seq
    }

    /// The worker's waker, for senders that hand it work (see `port::remote`).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Waits until the worker applied command `seq`; `false` on timeout.
    pub fn wait(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.applied.load(Ordering::Acquire) < seq {
            if Instant::now() >= deadline || self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Stops the worker and joins its thread.
    pub fn stop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<P: Pipeline> Drop for WorkerHandle<P> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

/// The pipeline's view of worker `$w` at time `$now` (a macro, not a method, so that the
/// borrows of the worker's fields stay disjoint from those of its pipeline and snapshot).
macro_rules! context {
    ($w:ident, $now_ns:expr) => {
        Context {
            cache: &mut $w.cache,
            ports: &mut $w.ports,
            stats: &$w.stats,
            now: $now_ns / 1_000_000_000,
            now_ns: $now_ns,
            worker: $w.id,
        }
    };
}

/// A worker's loop state. Tests and benchmarks drive it step by step with [`Worker::poll_once`];
/// the daemon runs it on a pinned thread with [`spawn`].
pub struct Worker<P: Pipeline> {
    id: u16,
    pipeline: P,
    cfg: Arc<P::Config>,
    ports: Ports,
    rx: Vec<PortId>,
    cache: PoolCache,
    stats: Arc<WorkerStats>,
    cmds: Receiver<(u64, Command<P>)>,
    shared: Arc<WorkerShared>,
    burst: Burst,
    /// Rings other workers send into for ports whose queue this worker owns.
    inbound: Vec<(PortId, crate::ring::Consumer)>,
    last_tick: u64,
    stop: bool,
}

impl<P: Pipeline> Worker<P> {
    /// A worker with its command channel; the sender goes to whoever configures it.
    pub fn new(
        id: u16,
        pool: Arc<Pool>,
        pipeline: P,
        cfg: Arc<P::Config>,
    ) -> (Worker<P>, Sender<(u64, Command<P>)>) {
        let (tx, rx) = channel::bounded(256);
        let stats = Arc::new(WorkerStats::new(pipeline.counters(), MAX_PORTS));
        let w = Worker {
            id,
            pipeline,
            cfg,
            ports: Ports::new(),
            rx: Vec::with_capacity(MAX_PORTS),
            cache: PoolCache::new(pool),
            stats,
            cmds: rx,
            shared: Arc::new(WorkerShared::default()),
            burst: Burst::new(),
            inbound: Vec::new(),
            last_tick: 0,
            stop: false,
        };
        (w, tx)
    }

    /// The worker's counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// The pipeline, for inspection in tests.
    pub fn pipeline(&self) -> &P {
        &self.pipeline
    }

    /// The worker's buffer cache (tests use it to build frames).
    pub fn cache(&mut self) -> &mut PoolCache {
        &mut self.cache
    }

    /// Applies pending commands (at `now` nanoseconds); returns whether the port set changed.
    fn apply_commands(&mut self, now: u64) -> bool {
        let mut ports_changed = false;
        loop {
            let (seq, cmd) = match self.cmds.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    break;
                }
            };
            let mut cx = context!(self, now);
            match cmd {
                Command::Config(cfg) => {
                    self.cfg = cfg;
                    self.pipeline.configure(&mut cx, &self.cfg);
                    self.stats.event(WorkerEvent::ConfigApplied).inc();
                }
                Command::Attach { port, io, rx } => {
                    if let Some(mut old) = self.ports.attach(&mut self.cache, port, io) {
                        old.release(&mut self.cache);
                    }
                    // A new queue (a port id may be reused) starts with a live device.
                    self.stats.port(port).device_gone.set(0);
                    self.rx.retain(|&p| p != port);
                    if rx {
                        self.rx.push(port);
                    }
                    ports_changed = true;
                }
                Command::Detach(port) => {
                    if let Some(mut io) = self.ports.detach(&mut self.cache, port) {
                        io.release(&mut self.cache);
                    }
                    self.rx.retain(|&p| p != port);
                    // Dropping a ring's last half returns what it still holds to the pool.
                    self.inbound.retain(|(p, _)| *p != port);
                    ports_changed = true;
                }
                Command::Inbound { port, ring } => self.inbound.push((port, ring)),
                Command::Tap { port, capture } => self.ports.tap(port, capture),
                Command::Untap(capture) => self.ports.untap(&capture),
                Command::Request(req) => self.pipeline.request(&mut cx, &self.cfg, req),
                Command::Stop => self.stop = true,
            }
            self.shared.applied.store(seq, Ordering::Release);
        }
        if ports_changed {
            self.shared
                .rx_queues
                .store(self.rx.len() as u64, Ordering::Relaxed);
        }
        ports_changed
    }

    /// Adds every receive queue's descriptor to the epoll set (`on`), or takes them out.
    fn watch(&self, poll: &Poll, on: bool) {
        for &port in &self.rx {
            let Some(Some(slot)) = self.ports.slots.get(port as usize) else {
                continue;
            };
            let Some(fd) = slot.io.raw_fd() else {
                continue;
            };
            let r = if on {
                poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(port as usize),
                    Interest::READABLE,
                )
            } else {
                poll.registry().deregister(&mut SourceFd(&fd))
            };
            // A failure leaves the worker on its timeout, never stuck: it polls again after it.
            let _ = r;
        }
    }

    /// One loop iteration at time `now` (seconds): commands, receive on every port, run the
    /// pipeline, transmit, timers. Returns the number of frames received.
    pub fn poll_once(&mut self, now: u64) -> usize {
        self.step(now.saturating_mul(1_000_000_000))
    }

    /// As [`Worker::poll_once`], at `now_ns` nanoseconds.
    pub fn poll_once_ns(&mut self, now_ns: u64) -> usize {
        self.step(now_ns)
    }

    fn step(&mut self, now_ns: u64) -> usize {
        let now = now_ns;
        if !self.cmds.is_empty() {
            self.apply_commands(now);
        }
        let mut total = 0;
        for i in 0..self.rx.len() {
            let port = self.rx[i];
            let Some(Some(slot)) = self.ports.slots.get_mut(port as usize) else {
                continue;
            };
            let n = slot
                .io
                .rx_burst(&mut self.cache, &mut self.burst, self.stats.port(port));
            if self.burst.is_empty() {
                continue;
            }
            total += n;
            let pool = self.cache.pool();
            for b in self.burst.bufs_mut() {
                pool.set_port(b, port);
            }
            if !slot.rx_taps.is_empty() {
                let ts = capture::realtime_ns();
                for t in &slot.rx_taps {
                    t.tap(pool, self.burst.bufs(), port, Direction::Rx, ts);
                }
            }
            let mut cx = context!(self, now);
            self.pipeline.rx(&mut cx, &self.cfg, port, &mut self.burst);
            // The pipeline must consume the burst; anything left would leak, so free it.
            self.burst.free_all(&mut self.cache);
            self.ports.flush(&mut self.cache, &self.stats);
        }
        total += self.drain_inbound();
        {
            let mut cx = context!(self, now);
            let n = self.pipeline.poll(&mut cx, &self.cfg);
            if n > 0 {
                total += n;
                self.ports.flush(&mut self.cache, &self.stats);
            }
        }
        if now / 1_000_000_000 != self.last_tick {
            self.last_tick = now / 1_000_000_000;
            let mut cx = context!(self, now);
            self.pipeline.tick(&mut cx, &self.cfg);
            self.ports.flush(&mut self.cache, &self.stats);
        }
        self.stats.event(WorkerEvent::Loops).inc();
        if total == 0 {
            self.stats.event(WorkerEvent::IdleLoops).inc();
        }
        total
    }

    /// Sends what other workers handed over for ports whose queue is here; returns how many.
    fn drain_inbound(&mut self) -> usize {
        let mut total = 0;
        for (port, ring) in self.inbound.iter_mut() {
            while ring.pop_burst(&mut self.burst) > 0 {
                total += self.burst.len();
                match self.ports.slots.get_mut(*port as usize) {
                    Some(Some(slot)) => {
                        slot.io
                            .tx_burst(&mut self.cache, &mut self.burst, self.stats.port(*port));
                    }
                    _ => {
                        self.stats
                            .port(*port)
                            .tx_dropped
                            .add(self.burst.len() as u64);
                        self.burst.free_all(&mut self.cache);
                    }
                }
            }
        }
        total
    }

    /// Whether another worker handed over frames not sent yet.
    fn inbound_waiting(&self) -> bool {
        self.inbound.iter().any(|(_, r)| !r.is_empty())
    }

    /// The worker's shared state (tests hand it to a [`crate::port::remote::RemoteTx`]).
    pub fn shared(&self) -> &Arc<WorkerShared> {
        &self.shared
    }

    fn run(mut self, mut poll: Poll) {
        let start = Instant::now();
        let mut events = Events::with_capacity(64);
        // When the current run of empty iterations began (ns since `start`); None while busy.
        let mut idle_start: Option<u64> = None;
        // Cycle accounting (OVS's pmd-stats-show): an iteration that moved frames is busy time,
        // one that did not is idle, and so is the time between iterations (yielding, sleeping).
        let mut last_ns = 0u64;
        let spin_ns = SPIN_TIME.as_nanos() as u64;
        let sleep_ns = IDLE_BEFORE_SLEEP.as_nanos() as u64;
        let clock = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // One clock read per iteration: the end of one is the start of the next, unless the
        // worker yielded or slept in between.
        let mut now_ns = clock();
        while !self.stop {
            let n = self.step(now_ns);
            let after = clock();
            // What passed between iterations (spinning, yielding, sleeping) was idle.
            let gap = now_ns.saturating_sub(last_ns);
            let spent = after.saturating_sub(now_ns);
            last_ns = after;
            if n > 0 {
                self.stats.event(WorkerEvent::IdleNs).add(gap);
                self.stats.event(WorkerEvent::BusyNs).add(spent);
                idle_start = None;
                now_ns = after;
                continue;
            }
            self.stats.event(WorkerEvent::IdleNs).add(gap + spent);
            let idle = after.saturating_sub(*idle_start.get_or_insert(now_ns));
            if idle < spin_ns {
                std::hint::spin_loop();
                now_ns = after;
                continue;
            }
            if idle < sleep_ns {
                std::thread::yield_now();
                now_ns = clock();
                continue;
            }
            // Every receive queue was drained to EAGAIN in the last iteration, so with
            // edge-triggered epoll no arrival since then can be missed.
            let all_have_fds = self
                .rx
                .iter()
                .all(|&p| match self.ports.slots.get(p as usize) {
                    // A dead queue has nothing to wait for.
                    Some(Some(s)) => s.io.dead() || s.io.raw_fd().is_some(),
                    _ => true,
                });
            let timeout = if all_have_fds {
                MAX_SLEEP
            } else {
                Duration::from_millis(1)
            };
            // Announce the sleep, then look at the inbound rings once more (the other half of
            // the wakeup contract in `port::remote`).
            self.shared.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.inbound_waiting() && !self.pipeline.pending() {
                self.stats.event(WorkerEvent::Sleeps).inc();
                // Registering checks readiness: a frame that came after the last drain wakes
                // the poll at once.
                self.watch(&poll, true);
                if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                self.watch(&poll, false);
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
            idle_start = None;
            now_ns = clock();
        }
        // Hand every queue and buffer back before the thread ends.
        for port in 0..MAX_PORTS as PortId {
            if let Some(mut io) = self.ports.detach(&mut self.cache, port) {
                io.release(&mut self.cache);
            }
        }
        let _ = &mut poll;
    }
}

/// Starts worker `w` on its own thread, pinned to `core` when given.
pub fn spawn<P: Pipeline>(
    w: Worker<P>,
    tx: Sender<(u64, Command<P>)>,
    core: Option<core_affinity::CoreId>,
) -> std::io::Result<WorkerHandle<P>> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
    let shared = w.shared.clone();
    let stats = w.stats.clone();
    let id = w.id;
    let thread = std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            if let Some(c) = core {
                let ok = core_affinity::set_for_current(c);
                w.shared.core.store(c.id as u64, Ordering::Relaxed);
                w.shared.pinned.store(ok, Ordering::Relaxed);
            }
            w.run(poll);
        })?;
    Ok(WorkerHandle {
        id,
        tx,
        waker,
        next_seq: AtomicU64::new(0),
        shared,
        stats,
        thread: Some(thread),
    })
}
