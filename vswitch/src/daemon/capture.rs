//! Packet capture sessions: `capture.start` hands a [`Capture`] ring to the workers that hold
//! the port, `capture.read` drains it, `capture.stop` takes it back. A capture also ends when
//! the connection that started it closes, and stops taking frames when its port is removed.
//!
//! A subinterface has no queues: capturing `PARENT.VID` taps the trunk and keeps only frames
//! tagged VID (shown tagged, as on the wire).

use super::{err, no_port, Daemon, WORKER_WAIT};
use control::proto::{
    CaptureBatch, CaptureDirection, CaptureId, CaptureRead, CaptureStart, CaptureStarted,
    CaptureSummary, CapturedPacket, ErrorBody, ErrorCode, PortType, CAPTURE_DEFAULT_SNAPLEN,
    CAPTURE_MAX, CAPTURE_MAX_READ, CAPTURE_MAX_SNAPLEN,
};
use control::text::encode_hex;
use dataplane::capture::{Capture, Direction, Filter, MAX_SLOTS};
use dataplane::port::PortId;
use dataplane::worker::Command;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Frame bytes one `capture.read` returns at most (hex doubles it on the wire).
const READ_BYTES: usize = 1 << 20;

/// One running capture.
struct Session {
    cap: Arc<Capture>,
    /// The port the workers tap (a subinterface's trunk).
    tapped: PortId,
    /// The port the user named.
    named: PortId,
    /// The control connection that started it.
    conn: usize,
    /// Why it stopped taking frames early, if it did.
    ended: Option<String>,
}

/// The daemon's captures.
#[derive(Default)]
pub(super) struct Captures {
    next_id: u64,
    sessions: BTreeMap<u64, Session>,
    /// The connection whose request is being handled (set by the server before each request).
    pub(super) conn: usize,
}

fn bad(msg: impl Into<String>) -> ErrorBody {
    err(ErrorCode::InvalidArgument, msg)
}

impl Daemon {
    /// `capture.start`.
    pub(super) fn capture_start(&mut self, a: CaptureStart) -> Result<CaptureStarted, ErrorBody> {
        let snaplen = a.snaplen.unwrap_or(CAPTURE_DEFAULT_SNAPLEN);
        if snaplen == 0 || snaplen > CAPTURE_MAX_SNAPLEN {
            return Err(bad(format!(
                "snaplen {snaplen} is out of range; give 1 to {CAPTURE_MAX_SNAPLEN} bytes"
            )));
        }
        if a.count == Some(0) {
            return Err(bad(
                "count 0 would capture nothing; give a positive count, or none to capture until stopped",
            ));
        }
        let slots = match a.ring {
            Some(r) if r == 0 || r as usize > MAX_SLOTS => {
                return Err(bad(format!(
                    "ring {r} is out of range; give 1 to {MAX_SLOTS} snapshots"
                )))
            }
            Some(r) => r as usize,
            None => Capture::default_slots(snaplen as usize),
        };
        if self.captures.sessions.len() >= CAPTURE_MAX {
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "{CAPTURE_MAX} captures are running already (the most at once); stop one first"
                ),
            ));
        }
        let p = self
            .desired
            .ports
            .get(&a.port)
            .ok_or_else(|| no_port(&a.port))?;
        let named = p.id;
        let (tapped, vid, trunk) = if p.spec.kind == PortType::Vlan {
            let (parent, vid) = self.desired.vlan_parent(&p.spec).ok_or_else(|| {
                err(
                    ErrorCode::Conflict,
                    format!("subinterface '{}' has no trunk port; add it first", a.port),
                )
            })?;
            (parent.id, Some(vid), parent)
        } else {
            (p.id, None, p)
        };
        let trunk_rt = self.runtime.get(&trunk.spec.name);
        if trunk_rt.and_then(|r| r.device.as_ref()).is_none() {
            let why = trunk_rt
                .and_then(|r| r.error.as_deref())
                .unwrap_or("it has no device");
            return Err(err(
                ErrorCode::Conflict,
                format!(
                    "port '{}' is down ({why}); nothing to capture until it is up again",
                    trunk.spec.name
                ),
            ));
        }
        let filter = Filter {
            rx: a.direction != CaptureDirection::Tx,
            tx: a.direction != CaptureDirection::Rx,
            vid,
        };
        let cap = Capture::new(snaplen as usize, slots, filter, a.count)
            .map(Arc::new)
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("cannot make a capture ring: {e:?}"),
                )
            })?;
        let seqs: Vec<u64> = self
            .workers
            .iter()
            .map(|w| {
                w.send(Command::Tap {
                    port: tapped,
                    capture: cap.clone(),
                })
            })
            .collect();
        // Once every worker has it, every frame from now on is seen.
        for (w, seq) in self.workers.iter().zip(seqs) {
            if !w.wait(seq, WORKER_WAIT) {
                tracing::warn!(worker = w.id, "worker did not attach the capture in time");
            }
        }
        self.captures.next_id += 1;
        let id = self.captures.next_id;
        let conn = self.captures.conn;
        self.captures.sessions.insert(
            id,
            Session {
                cap,
                tapped,
                named,
                conn,
                ended: None,
            },
        );
        tracing::info!(capture = id, port = %a.port, snaplen, ring = slots, "capture started");
        Ok(CaptureStarted {
            id,
            snaplen,
            ring: slots as u32,
        })
    }

    fn no_capture(id: u64) -> ErrorBody {
        err(
            ErrorCode::NotFound,
            format!("no capture {id}: it was stopped, or its connection closed; start a new one"),
        )
    }

    /// `capture.read`.
    pub(super) fn capture_read(&mut self, a: CaptureRead) -> Result<CaptureBatch, ErrorBody> {
        let s = self
            .captures
            .sessions
            .get(&a.id)
            .ok_or_else(|| Self::no_capture(a.id))?;
        let max = a.max.unwrap_or(CAPTURE_MAX_READ).clamp(1, CAPTURE_MAX_READ) as usize;
        let mut packets = Vec::new();
        let mut bytes = 0usize;
        while packets.len() < max && bytes < READ_BYTES {
            let Some(r) = s.cap.pop() else {
                break;
            };
            bytes += r.data().len();
            packets.push(CapturedPacket {
                ts_ns: r.ts_ns(),
                orig_len: r.orig_len(),
                direction: match r.direction() {
                    Direction::Rx => CaptureDirection::Rx,
                    Direction::Tx => CaptureDirection::Tx,
                },
                data: encode_hex(r.data()),
            });
        }
        // Completion first: once it is seen, every frame of the count is on the ring, so an
        // empty ring after it means there is nothing more to come.
        let complete = s.cap.complete();
        let drained = s.cap.pending() == 0;
        Ok(CaptureBatch {
            packets,
            captured: s.cap.taken(),
            missed: s.cap.missed(),
            done: drained && (complete || s.ended.is_some()),
            ended: s.ended.clone(),
        })
    }

    /// `capture.stop`.
    pub(super) fn capture_stop(&mut self, a: CaptureId) -> Result<CaptureSummary, ErrorBody> {
        let s = self
            .captures
            .sessions
            .remove(&a.id)
            .ok_or_else(|| Self::no_capture(a.id))?;
        Ok(self.end_session(a.id, s))
    }

    /// Takes a session's ring back from the workers and sums it up.
    fn end_session(&mut self, id: u64, s: Session) -> CaptureSummary {
        let seqs: Vec<u64> = self
            .workers
            .iter()
            .map(|w| w.send(Command::Untap(s.cap.clone())))
            .collect();
        for (w, seq) in self.workers.iter().zip(seqs) {
            if !w.wait(seq, WORKER_WAIT) {
                tracing::warn!(worker = w.id, "worker did not detach the capture in time");
            }
        }
        let summary = CaptureSummary {
            captured: s.cap.taken(),
            missed: s.cap.missed(),
            unread: s.cap.pending() as u64,
        };
        tracing::info!(
            capture = id,
            captured = summary.captured,
            missed = summary.missed,
            "capture stopped"
        );
        summary
    }

    /// Ends the captures that connection `conn` started (it closed).
    pub(super) fn captures_conn_closed(&mut self, conn: usize) {
        let ids: Vec<u64> = self
            .captures
            .sessions
            .iter()
            .filter(|(_, s)| s.conn == conn)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(s) = self.captures.sessions.remove(&id) {
                self.end_session(id, s);
            }
        }
    }

    /// Marks the captures of a port that is being removed as ended: the workers drop their taps
    /// with the port's queues; what was taken can still be read.
    pub(super) fn captures_port_removed(&mut self, id: PortId, name: &str) {
        let mut untap = Vec::new();
        for s in self.captures.sessions.values_mut() {
            if (s.named == id || s.tapped == id) && s.ended.is_none() {
                s.ended = Some(format!("port '{name}' was removed"));
                untap.push(s.cap.clone());
            }
        }
        // A subinterface's trunk stays: take the ring off it explicitly.
        for cap in untap {
            for w in &self.workers {
                w.send(Command::Untap(cap.clone()));
            }
        }
    }
}
