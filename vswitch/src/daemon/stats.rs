//! `status`, `stats` and the rates they show: counters summed over workers.

use super::*;

impl Daemon {
    pub(super) fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            pid: std::process::id(),
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerInfo {
                    id: w.id,
                    core: w.shared.core.load(Ordering::Relaxed) as usize,
                    pinned: w.shared.pinned.load(Ordering::Relaxed),
                    queues: w.shared.rx_queues.load(Ordering::Relaxed) as u32,
                    sleeps: w.stats.event(WorkerEvent::Sleeps).get(),
                    rx_pps: self.worker_pps.get(i).copied().unwrap_or(0),
                })
                .collect(),
            networks: self.desired.nets.len() as u32,
            ports: self.desired.ports.len() as u32,
            rx_pps: self.pps.0,
            tx_pps: self.pps.1,
            store: self.store_status(),
        }
    }

    pub(super) fn port_counters(&self, id: PortId) -> PortCounters {
        sum_port(self.workers.iter().map(|w| &*w.stats), id)
    }

    pub(super) fn port_counters_since(&self, p: &PortState) -> PortCounters {
        // The kernel's counters belong to the port's own sockets: no base to subtract.
        let rt = self.runtime.get(&p.spec.name);
        let k = kernel_drops(rt.and_then(|r| r.device.as_ref()));
        let base = rt.map(|r| r.base.clone()).unwrap_or_default();
        PortCounters {
            rx_ring_full: k.rx_ring_full,
            rx_fill_empty: k.rx_fill_empty,
            rx_kernel_dropped: k.rx_kernel_dropped,
            ..counters_since(&self.port_counters(p.id), &base)
        }
    }

    /// Samples packet rates; called about once a second.
    pub fn sample_rates(&mut self) {
        self.watch_interfaces();
        let (rx, tx) = self.desired.ports.values().fold((0u64, 0u64), |(r, t), p| {
            let c = self.port_counters_since(p);
            (r + c.rx_packets, t + c.tx_packets)
        });
        let now = Instant::now();
        if let Some((t0, rx0, tx0)) = self.rate {
            let dt = now.duration_since(t0).as_secs_f64().max(0.001);
            self.pps = (
                (rx.saturating_sub(rx0) as f64 / dt) as u64,
                (tx.saturating_sub(tx0) as f64 / dt) as u64,
            );
            for (i, w) in self.workers.iter().enumerate() {
                let total: u64 = w.stats.ports.iter().map(|p| p.rx_packets.get()).sum();
                self.worker_pps[i] =
                    (total.saturating_sub(self.worker_rx_last[i]) as f64 / dt) as u64;
                self.worker_rx_last[i] = total;
            }
        }
        self.rate = Some((now, rx, tx));
    }

    pub(super) fn stats(&self, port: Option<&str>) -> Result<StatsInfo, ErrorBody> {
        let mut ports: Vec<&PortState> = match port {
            Some(p) => vec![self.desired.ports.get(p).ok_or_else(|| no_port(p))?],
            None => self.desired.ports.values().collect(),
        };
        ports.sort_by_key(|p| p.id);
        let mut drops = BTreeMap::new();
        let mut workers = Vec::new();
        for w in &self.workers {
            let mut counters = BTreeMap::new();
            for (i, name) in crate::counters::drop_counters() {
                let v = w.stats.pipeline.at(i).get();
                if v > 0 {
                    counters.insert(name.to_string(), v);
                    *drops.entry(name.to_string()).or_insert(0) += v;
                }
            }
            // Every stage's events, as the graph registered them (the router's among them).
            for (i, name) in crate::counters::event_counters() {
                let v = w.stats.pipeline.at(i).get();
                if v > 0 {
                    counters.insert(name.to_string(), v);
                }
            }
            for e in WorkerEvent::ALL {
                let v = w.stats.event(*e).get();
                if v > 0 {
                    counters.insert(e.name().to_string(), v);
                }
            }
            // Frames this worker moved, over all its queues (`vswitchctl top` rates them).
            let (rx, tx) = w.stats.ports.iter().fold((0u64, 0u64), |(r, t), p| {
                (
                    r.wrapping_add(p.rx_packets.get()),
                    t.wrapping_add(p.tx_packets.get()),
                )
            });
            for (name, v) in [("rx_packets", rx), ("tx_packets", tx)] {
                if v > 0 {
                    counters.insert(name.to_string(), v);
                }
            }
            workers.push(WorkerStats { id: w.id, counters });
        }
        let port_stats: Vec<PortStats> = ports
            .iter()
            .map(|p| PortStats {
                name: p.spec.name.clone(),
                counters: self.port_counters_since(p),
            })
            .collect();
        for (k, v) in [
            (
                "tx_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.tx_dropped)
                    .sum::<u64>(),
            ),
            (
                "rx_errors",
                port_stats.iter().map(|p| p.counters.rx_errors).sum::<u64>(),
            ),
            (
                "tx_offload_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.tx_offload_dropped)
                    .sum::<u64>(),
            ),
            (
                "rx_ring_full",
                port_stats.iter().map(|p| p.counters.rx_ring_full).sum(),
            ),
            (
                "rx_fill_empty",
                port_stats.iter().map(|p| p.counters.rx_fill_empty).sum(),
            ),
            (
                "rx_kernel_dropped",
                port_stats
                    .iter()
                    .map(|p| p.counters.rx_kernel_dropped)
                    .sum(),
            ),
        ] {
            if v > 0 {
                drops.insert(k.to_string(), v);
            }
        }
        Ok(StatsInfo {
            ports: port_stats,
            workers,
            drops,
        })
    }
}
