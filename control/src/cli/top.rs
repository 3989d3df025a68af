//! `vswitchctl top`: rates from two `stats` samples an interval apart, refreshed every interval
//! (or once, with `--once`): packets and bits per second per port, packets per second and the
//! busy and idle share of each worker's time (from its `busy_ns`/`idle_ns` counters, as OVS's
//! `pmd-stats-show` splits processing and idle cycles), and the drop reasons that grew most.
//!
//! The daemon only ever sends counters; every rate is computed here by [`rates`], a pure
//! function of two samples and the time between them.

use super::plan::Call;
use super::table::{left, right, Table};
use super::{emit, render, CliError};
use control::client::Client;
use control::proto::{StatsInfo, WorkerStats};
use serde::Serialize;
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

/// Drop reasons shown in the human output (JSON has every one that grew).
const TOP_DROPS: usize = 10;

/// Rates over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rates {
    /// Seconds between the two samples.
    pub interval_secs: f64,
    /// Per port, in the daemon's order.
    pub ports: Vec<PortRate>,
    /// Per worker.
    pub workers: Vec<WorkerRate>,
    /// Drop reasons that grew, fastest first.
    pub drops: Vec<DropRate>,
}

/// One port's rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PortRate {
    /// Port name.
    pub name: String,
    /// Frames received per second.
    pub rx_pps: f64,
    /// Bits received per second.
    pub rx_bps: f64,
    /// Frames sent per second.
    pub tx_pps: f64,
    /// Bits sent per second.
    pub tx_bps: f64,
    /// Frames dropped per second on the port (refused on transmit, lost on receive).
    pub dropped_pps: f64,
}

/// One worker's rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WorkerRate {
    /// Worker index.
    pub id: u16,
    /// Frames received per second over all its queues.
    pub rx_pps: f64,
    /// Percent of its measured time spent in iterations that moved frames (None: nothing
    /// measured, e.g. a daemon without cycle accounting).
    pub busy_pct: Option<f64>,
    /// Percent spent polling empty queues, yielding or asleep.
    pub idle_pct: Option<f64>,
}

/// One drop reason's rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DropRate {
    /// Reason name, as in `stats`.
    pub reason: String,
    /// Frames dropped per second.
    pub pps: f64,
}

/// How much a counter grew; a counter that went back (a port re-added under the same name)
/// counts from zero.
fn grew(before: u64, after: u64) -> u64 {
    after.checked_sub(before).unwrap_or(after)
}

fn counter(w: Option<&WorkerStats>, name: &str) -> u64 {
    w.and_then(|w| w.counters.get(name)).copied().unwrap_or(0)
}

/// The rates between two samples `secs` apart. A port or worker only in `after` counts from
/// zero; one only in `before` is gone and not shown.
pub(crate) fn rates(before: &StatsInfo, after: &StatsInfo, secs: f64) -> Rates {
    // Below a millisecond the division says nothing useful; never divide by zero.
    let secs = if secs.is_finite() {
        secs.max(0.001)
    } else {
        1.0
    };
    let per_sec = |d: u64| d as f64 / secs;
    let ports = after
        .ports
        .iter()
        .map(|p| {
            let zero = Default::default();
            let b = before
                .ports
                .iter()
                .find(|q| q.name == p.name)
                .map_or(&zero, |q| &q.counters);
            let a = &p.counters;
            let dropped = |c: &control::proto::PortCounters| {
                c.tx_dropped
                    .wrapping_add(c.tx_offload_dropped)
                    .wrapping_add(c.rx_errors)
                    .wrapping_add(c.rx_ring_full)
                    .wrapping_add(c.rx_kernel_dropped)
            };
            PortRate {
                name: p.name.clone(),
                rx_pps: per_sec(grew(b.rx_packets, a.rx_packets)),
                rx_bps: per_sec(grew(b.rx_bytes, a.rx_bytes)) * 8.0,
                tx_pps: per_sec(grew(b.tx_packets, a.tx_packets)),
                tx_bps: per_sec(grew(b.tx_bytes, a.tx_bytes)) * 8.0,
                dropped_pps: per_sec(grew(dropped(b), dropped(a))),
            }
        })
        .collect();
    let workers = after
        .workers
        .iter()
        .map(|w| {
            let b = before.workers.iter().find(|x| x.id == w.id);
            let d = |name| grew(counter(b, name), counter(Some(w), name));
            let (busy, idle) = (d("busy_ns"), d("idle_ns"));
            let total = busy.saturating_add(idle);
            let share = |part: u64| (total > 0).then(|| part as f64 * 100.0 / total as f64);
            WorkerRate {
                id: w.id,
                rx_pps: per_sec(d("rx_packets")),
                busy_pct: share(busy),
                idle_pct: share(idle),
            }
        })
        .collect();
    let mut drops: Vec<DropRate> = after
        .drops
        .iter()
        .filter_map(|(reason, &n)| {
            let d = grew(before.drops.get(reason).copied().unwrap_or(0), n);
            (d > 0).then(|| DropRate {
                reason: reason.clone(),
                pps: per_sec(d),
            })
        })
        .collect();
    drops.sort_by(|x, y| y.pps.total_cmp(&x.pps).then(x.reason.cmp(&y.reason)));
    Rates {
        interval_secs: secs,
        ports,
        workers,
        drops,
    }
}

/// A rate with an SI prefix: `950`, `12.3k`, `1.25M`, `10.0G`.
fn si(v: f64) -> String {
    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    let (div, unit) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(d, _)| v >= *d)
        .unwrap_or((1.0, ""));
    let x = v / div;
    if unit.is_empty() {
        format!("{x:.0}")
    } else if x < 10.0 {
        format!("{x:.2}{unit}")
    } else if x < 100.0 {
        format!("{x:.1}{unit}")
    } else {
        format!("{x:.0}{unit}")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |p| format!("{p:.1}%"))
}

/// One frame as tables.
pub(crate) fn human(r: &Rates) -> String {
    let mut ports = Table::new(&[
        left("PORT"),
        right("RX_PKT/S"),
        right("RX_BIT/S"),
        right("TX_PKT/S"),
        right("TX_BIT/S"),
        right("DROP/S"),
    ]);
    for p in &r.ports {
        ports.row([
            p.name.clone(),
            si(p.rx_pps),
            si(p.rx_bps),
            si(p.tx_pps),
            si(p.tx_bps),
            si(p.dropped_pps),
        ]);
    }
    let mut workers = Table::new(&[
        left("WORKER"),
        right("RX_PKT/S"),
        right("BUSY"),
        right("IDLE"),
    ]);
    for w in &r.workers {
        workers.row([
            w.id.to_string(),
            si(w.rx_pps),
            pct(w.busy_pct),
            pct(w.idle_pct),
        ]);
    }
    let mut drops = Table::new(&[left("DROP"), right("PKT/S")]);
    for d in r.drops.iter().take(TOP_DROPS) {
        drops.row([d.reason.clone(), si(d.pps)]);
    }
    format!(
        "rates over {:.2}s\n\n{}\n{}\n{}",
        r.interval_secs,
        ports.render(),
        workers.render(),
        drops.render()
    )
}

fn sample(client: &mut Client, call: &Call) -> Result<(Instant, StatsInfo), CliError> {
    let v = client.call(call.cmd, call.args.clone())?;
    let at = Instant::now();
    Ok((at, render::decode(call.cmd, v)?))
}

/// Runs `top`: samples, waits the interval, samples again, prints; again and again unless
/// `once`. On a terminal each frame replaces the last.
pub(crate) fn run(
    client: &mut Client,
    call: &Call,
    once: bool,
    json: bool,
) -> Result<(), CliError> {
    let every = call.every.unwrap_or(Duration::from_secs(1));
    let repaint = !once && !json && io::stdout().is_terminal();
    let mut prev = sample(client, call)?;
    let mut first = true;
    loop {
        std::thread::sleep(every);
        let next = sample(client, call)?;
        let r = rates(
            &prev.1,
            &next.1,
            next.0.saturating_duration_since(prev.0).as_secs_f64(),
        );
        let text = if json { render::pretty(&r)? } else { human(&r) };
        let frame = if repaint {
            format!(
                "\x1b[H\x1b[2Jevery {}s, Ctrl-C to stop\n\n{text}",
                every.as_secs()
            )
        } else if first || json {
            text
        } else {
            format!("\n{text}")
        };
        emit(&frame)?;
        if once {
            return Ok(());
        }
        first = false;
        prev = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(v: serde_json::Value) -> StatsInfo {
        serde_json::from_value(v).unwrap()
    }

    fn port(name: &str, rx: u64, rxb: u64, tx: u64, txb: u64, drop: u64) -> serde_json::Value {
        json!({"name": name, "rx_packets": rx, "rx_bytes": rxb, "tx_packets": tx,
               "tx_bytes": txb, "tx_dropped": drop})
    }

    #[test]
    fn rates_are_counter_growth_over_the_interval() {
        let before = stats(json!({
            "ports": [port("tap0", 100, 10_000, 50, 5_000, 1), port("gone", 1, 1, 1, 1, 0)],
            "workers": [{"id": 0, "counters": {"busy_ns": 1_000, "idle_ns": 1_000, "rx_packets": 10}},
                        {"id": 1, "counters": {}}],
            "drops": {"no_network": 5, "port_down": 1}
        }));
        let after = stats(json!({
            "ports": [port("tap0", 300, 30_000, 150, 20_000, 3), port("new", 20, 2_000, 0, 0, 0)],
            "workers": [{"id": 0, "counters": {"busy_ns": 251_000, "idle_ns": 751_000, "rx_packets": 210}},
                        {"id": 1, "counters": {}}],
            "drops": {"no_network": 9, "port_down": 1, "eth_too_short": 8}
        }));
        let r = rates(&before, &after, 2.0);
        assert_eq!(r.interval_secs, 2.0);
        assert_eq!(
            r.ports,
            vec![
                PortRate {
                    name: "tap0".into(),
                    rx_pps: 100.0,
                    rx_bps: 80_000.0,
                    tx_pps: 50.0,
                    tx_bps: 60_000.0,
                    dropped_pps: 1.0,
                },
                PortRate {
                    name: "new".into(),
                    rx_pps: 10.0,
                    rx_bps: 8_000.0,
                    tx_pps: 0.0,
                    tx_bps: 0.0,
                    dropped_pps: 0.0,
                },
            ]
        );
        assert_eq!(
            r.workers,
            vec![
                WorkerRate {
                    id: 0,
                    rx_pps: 100.0,
                    busy_pct: Some(25.0),
                    idle_pct: Some(75.0),
                },
                WorkerRate {
                    id: 1,
                    rx_pps: 0.0,
                    busy_pct: None,
                    idle_pct: None,
                },
            ]
        );
        assert_eq!(
            r.drops,
            vec![
                DropRate {
                    reason: "eth_too_short".into(),
                    pps: 4.0
                },
                DropRate {
                    reason: "no_network".into(),
                    pps: 2.0
                },
            ]
        );
    }

    #[test]
    fn counters_that_went_back_count_from_zero_and_zero_intervals_do_not_divide_by_zero() {
        let before =
            stats(json!({"ports": [port("p", 1000, 1000, 0, 0, 0)], "workers": [], "drops": {}}));
        let after =
            stats(json!({"ports": [port("p", 3, 100, 0, 0, 0)], "workers": [], "drops": {}}));
        let r = rates(&before, &after, 1.0);
        assert_eq!(r.ports[0].rx_pps, 3.0);
        let r = rates(&before, &after, 0.0);
        assert!(r.ports[0].rx_pps.is_finite());
        let r = rates(&before, &after, f64::NAN);
        assert_eq!(r.interval_secs, 1.0);
    }

    #[test]
    fn rates_print_with_si_prefixes_and_percentages() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.4), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(10e9), "10.0G");
        assert_eq!(si(f64::NAN), "0");
        let r = Rates {
            interval_secs: 1.0,
            ports: vec![PortRate {
                name: "tap0".into(),
                rx_pps: 1500.0,
                rx_bps: 12e6,
                tx_pps: 2.0,
                tx_bps: 1000.0,
                dropped_pps: 0.0,
            }],
            workers: vec![WorkerRate {
                id: 0,
                rx_pps: 1500.0,
                busy_pct: Some(12.5),
                idle_pct: Some(87.5),
            }],
            drops: vec![DropRate {
                reason: "no_network".into(),
                pps: 3.0,
            }],
        };
        assert_eq!(
            human(&r),
            "rates over 1.00s\n\n\
             PORT  RX_PKT/S  RX_BIT/S  TX_PKT/S  TX_BIT/S  DROP/S\n\
             tap0     1.50k     12.0M         2     1.00k       0\n\
             \n\
             WORKER  RX_PKT/S   BUSY   IDLE\n\
             0          1.50k  12.5%  87.5%\n\
             \n\
             DROP        PKT/S\n\
             no_network      3\n"
        );
    }
}
