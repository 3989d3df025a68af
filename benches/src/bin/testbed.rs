//! `testbed`: the switch against what people use instead, on one machine, in one run.
//!
//! ```text
//! cargo run --release -p benches --bin testbed -- [--quick] [--runs N] [--seconds S] [--out DIR]
//! ```
//!
//! Builds its own namespaces and veth pairs, measures the generator straight into the sink (the
//! ceiling), then each contender on the same pairs: 64-byte packets per second at the sink and
//! one checked TCP stream, medians of `--runs` runs with min and max. Prints a table and writes
//! `testbed.svg` and `testbed.json` into `--out` (default `target/testbed`). Needs root.
//! Contenders that are not installed (Open vSwitch, DPDK, iptables) are skipped with a line.
//! The NAT pair (`natbridge`: a Linux bridge with iptables MASQUERADE, Docker's way out;
//! `nattap`: vswitchd's gateway and source NAT) is compared with each other, and so is the
//! published-port pair (`pubbridge`: iptables DNAT, what `docker run -p` programs; `pubtap`: a
//! vswitchd service publishing the port): connections per second and TCP throughput.
//! The overlay contenders (`vx*`: two hosts joined by one veth, VXLAN between them; `vxovs` is
//! Open vSwitch's userspace VXLAN, where installed) are compared with the kernel's VXLAN
//! (`vxkernel`): TCP and 64-byte frames from one container to the other.

use benches::testbed::contenders::{self, Config, Outcome, INSTALL_HINT};
use benches::testbed::nat;
use benches::testbed::net::{self, Testbed};
use benches::testbed::overlay;
use benches::testbed::publish;
use benches::testbed::report;
use benches::testbed::traffic::FRAME_LEN;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: testbed [--quick] [--runs N] [--seconds S] [--out DIR] [--only NAME,...] [--threaded-napi] [--sink-napi-core N]
       testbed --soak SECONDS
  --quick          a few seconds per contender (what CI runs)
  --runs N         runs per metric (default 5, quick 2)
  --seconds S      seconds counted per packet-rate run and per TCP transfer (default 5, quick 1)
  --out DIR        where testbed.svg and testbed.json go (default target/testbed)
  --only LIST      only these contenders: ceiling,bridge,afxdp,tap,tapplain,ovs,ovstap,testpmd,natbridge,nattap,
                   pubbridge,pubtap,vxkernel,vxtap,vxtapcut,vxtapplain,vxvtep,vxvtepin,vxesp,vxespudp,vxespnogro,
                   vxafxdp,vxovs
  --threaded-napi  move the DUT's ingress veth receive work (for the kernel bridge: the bridge)
                   from softirq on the sending core into a NAPI thread pinned to the DUT core
  --sink-napi-core N  move the sink's receive work (its XDP drop) into a SCHED_FIFO NAPI thread
                   on core N instead of the core that sent into it (for a userspace DUT, its own)
  --soak SECONDS   instead of the contenders: the daemon under mixed checked traffic and faults
                   (hostile frames, configuration churn, garbage control clients) for SECONDS,
                   its memory sampled; fails on any lost byte or ping, or memory growth";

struct Args {
    quick: bool,
    runs: Option<usize>,
    seconds: Option<f64>,
    out: PathBuf,
    only: Option<Vec<String>>,
    threaded_napi: bool,
    sink_napi_core: Option<usize>,
    soak: Option<f64>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        runs: None,
        seconds: None,
        out: PathBuf::from("target/testbed"),
        only: None,
        threaded_napi: false,
        sink_napi_core: None,
        soak: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--threaded-napi" => a.threaded_napi = true,
            "--sink-napi-core" => {
                let v = val("--sink-napi-core")?;
                a.sink_napi_core = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--sink-napi-core takes a core number, not {v}"))?,
                );
            }
            "--runs" => {
                let v = val("--runs")?;
                a.runs = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or(format!("--runs takes 1..100, not {v}"))?,
                );
            }
            "--seconds" => {
                let v = val("--seconds")?;
                a.seconds = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|s| (0.1..=600.0).contains(s))
                        .ok_or(format!("--seconds takes 0.1..600, not {v}"))?,
                );
            }
            "--soak" => {
                let v = val("--soak")?;
                a.soak = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|s| (5.0..=86_400.0).contains(s))
                        .ok_or(format!("--soak takes 5..86400 seconds, not {v}"))?,
                );
            }
            "--out" => a.out = PathBuf::from(val("--out")?),
            "--only" => {
                a.only = Some(val("--only")?.split(',').map(str::to_string).collect());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !vswitch::testbed::is_root() {
        eprintln!("testbed: needs root (network namespaces, BPF, AF_XDP); run it with sudo");
        return ExitCode::FAILURE;
    }
    if !net::have("ip") {
        eprintln!("testbed: needs iproute2's `ip` (apt install iproute2)");
        return ExitCode::FAILURE;
    }
    net::catch_signals();
    if let Some(secs) = args.soak {
        let sample = Duration::from_secs_f64((secs / 12.0).clamp(1.0, 60.0));
        println!("testbed: soak for {secs} s, memory sampled every {sample:?}");
        return match benches::testbed::soak::soak(secs, sample) {
            Ok(r) => {
                println!("{}", benches::testbed::soak::render(&r));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("testbed: soak failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cores = net::cores();
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    let cfg = Config {
        runs: args.runs.unwrap_or(if args.quick { 2 } else { 5 }),
        seconds,
        warmup: if args.quick { 0.3 } else { 1.0 },
        tcp_seconds: seconds,
        threaded_napi: args.threaded_napi,
        sink_napi_core: args.sink_napi_core,
        dut_core: if cores > 1 { 1 } else { 0 },
        scratch: std::env::temp_dir().join(format!("testbed-{}", std::process::id())),
    };
    let subtitle = format!(
        "{FRAME_LEN}-byte frames (64 with FCS), generator core 0, DUT core {}, {} runs x {}s, {} NAPI on the DUT ingress",
        cfg.dut_core,
        cfg.runs,
        cfg.seconds,
        if cfg.threaded_napi { "threaded" } else { "softirq" }
    );
    println!("testbed: {subtitle}");
    if cores < 2 {
        println!("testbed: only {cores} core: generator and DUT share it, numbers mean little");
    }
    let result = run(&args, &cfg, &subtitle);
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, cfg: &Config, subtitle: &str) -> Result<(), String> {
    let wanted = |n: &str| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    let tb = Testbed::build()?;
    println!(
        "testbed: namespaces {} (generator), {} (DUT), {} (sink)",
        tb.gen.name(),
        tb.dut.name(),
        tb.sink.name()
    );
    type Contender = fn(&Testbed, &Config) -> Outcome;
    // The NAT pair comes last, so that what netfilter keeps in the DUT namespace once iptables
    // was used there (connection tracking entries) cannot touch the other contenders.
    let all: [(&str, Contender); 23] = [
        ("ceiling", contenders::ceiling),
        ("bridge", contenders::kernel_bridge),
        ("afxdp", contenders::vswitchd_afxdp),
        ("tap", contenders::vswitchd_tap),
        ("tapplain", contenders::vswitchd_tap_plain),
        ("ovs", contenders::ovs),
        ("ovstap", contenders::ovs_tap),
        ("testpmd", contenders::testpmd),
        ("natbridge", nat::kernel_nat),
        ("nattap", nat::vswitchd_nat),
        ("pubbridge", publish::kernel_publish),
        ("pubtap", publish::vswitchd_publish),
        ("vxkernel", overlay::kernel),
        ("vxtap", overlay::ours),
        ("vxtapcut", overlay::ours_cut),
        ("vxtapplain", overlay::ours_plain),
        ("vxvtep", overlay::vtep_out),
        ("vxvtepin", overlay::vtep_in),
        ("vxesp", overlay::encrypted),
        ("vxespudp", overlay::encrypted_udp),
        ("vxespnogro", overlay::encrypted_no_gro),
        ("vxafxdp", overlay::ours_xdp),
        ("vxovs", overlay::ovs),
    ];
    let mut results = Vec::new();
    for (key, f) in all {
        if !wanted(key) {
            continue;
        }
        if net::stopping() {
            return Err("stopped; everything made has been removed".into());
        }
        println!("== {key}");
        let o = f(&tb, cfg);
        match &o.skipped {
            Some(why) => println!("   {}: skipped: {why}", o.name),
            None => {
                println!("   {}: {}", o.name, o.topology);
                for n in &o.notes {
                    println!("   note: {n}");
                }
            }
        }
        results.push(o);
    }
    drop(tb);
    println!("\n{}", report::table(&results));
    if results.iter().any(|o| o.skipped.is_some()) {
        println!("(to add the skipped peers: {INSTALL_HINT})");
    }
    let meta = serde_json::json!({
        "frame_len": FRAME_LEN,
        "runs": cfg.runs,
        "seconds": cfg.seconds,
        "threaded_napi": cfg.threaded_napi,
        "dut_core": cfg.dut_core,
        "cores": net::cores(),
        "quick": args.quick,
    });
    report::write(&args.out, &results, meta, subtitle)?;
    println!(
        "wrote {} and {}",
        args.out.join("testbed.svg").display(),
        args.out.join("testbed.json").display()
    );
    // Our own contenders must have produced numbers: anything else is a broken harness. A peer
    // (OVS, testpmd) that is installed but fails is reported in its notes, not fatal.
    let empty: Vec<&str> = results
        .iter()
        .filter(|o| {
            !o.optional
                && o.skipped.is_none()
                && ((o.pps.is_empty() && o.cps.is_empty()) || o.gbps.is_empty())
        })
        .map(|o| o.name.as_str())
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(format!("no numbers from: {}", empty.join(", ")))
    }
}
