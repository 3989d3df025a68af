//! The results: a table on stdout, a hand-written SVG bar chart (median bars, min/max whiskers)
//! and a JSON file with every raw number.

use super::contenders::Outcome;
use std::fmt::Write as _;
use std::path::Path;

/// Median, minimum and maximum.
pub type Summary = (f64, f64, f64);

/// Median, minimum and maximum of `v`; `None` when empty.
pub fn summary(v: &[f64]) -> Option<Summary> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((med, s[0], s[n - 1]))
}

fn cell(v: &[f64], scale: f64, digits: usize) -> String {
    match summary(v) {
        Some((m, lo, hi)) => format!(
            "{:.d$} [{:.d$}-{:.d$}]",
            m / scale,
            lo / scale,
            hi / scale,
            d = digits
        ),
        None => "-".into(),
    }
}

/// The contender `o`'s ratios are taken against: its `versus`, else the Linux bridge.
fn reference(o: &Outcome) -> &str {
    o.versus.as_deref().unwrap_or("linux bridge")
}

/// The median of `pick(o)` over the median of `pick` of `o`'s reference in `results`.
fn ratio(results: &[Outcome], o: &Outcome, pick: fn(&Outcome) -> &[f64]) -> Option<f64> {
    let base = results.iter().find(|r| r.name == reference(o))?;
    let (m, b) = (summary(pick(o))?.0, summary(pick(base))?.0);
    (b > 0.0).then(|| m / b)
}

fn pps_of(o: &Outcome) -> &[f64] {
    &o.pps
}

fn gbps_of(o: &Outcome) -> &[f64] {
    &o.gbps
}

fn cps_of(o: &Outcome) -> &[f64] {
    &o.cps
}

/// The table: one row per contender, medians with [min-max], and the ratio to the contender
/// it is compared with in the same run (the kernel bridge, or what its `versus` names: the NAT
/// pair is compared with the kernel's NAT).
pub fn table(results: &[Outcome]) -> String {
    let shown = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<24} {:>26} {:>8} {:>24} {:>8}  ref",
        "contender", "Mpps 64B med [min-max]", "x ref", "TCP Gbit/s med [min-max]", "x ref"
    );
    for o in results {
        if let Some(why) = &o.skipped {
            let _ = writeln!(t, "{:<24} skipped: {why}", o.name);
            continue;
        }
        let known = results.iter().any(|r| r.name == reference(o));
        let _ = writeln!(
            t,
            "{:<24} {:>26} {:>8} {:>24} {:>8}  {}",
            o.name,
            cell(&o.pps, 1e6, 3),
            shown(ratio(results, o, pps_of)),
            cell(&o.gbps, 1.0, 2),
            shown(ratio(results, o, gbps_of)),
            if known { reference(o) } else { "-" },
        );
    }
    // Connection rates (the published-port pair), against the same reference.
    if results.iter().any(|o| !o.cps.is_empty()) {
        let _ = writeln!(
            t,
            "\n{:<24} {:>30} {:>8}  ref",
            "contender", "connections/s med [min-max]", "x ref"
        );
        for o in results.iter().filter(|o| !o.cps.is_empty()) {
            let _ = writeln!(
                t,
                "{:<24} {:>30} {:>8}  {}",
                o.name,
                cell(&o.cps, 1.0, 0),
                shown(ratio(results, o, cps_of)),
                reference(o)
            );
        }
    }
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One horizontal bar panel: a bar per contender at its median, a whisker from min to max.
fn panel(svg: &mut String, y0: f64, title: &str, rows: &[(&str, Option<Summary>)]) -> f64 {
    const LEFT: f64 = 190.0;
    const WIDTH: f64 = 520.0;
    const ROW: f64 = 26.0;
    let max = rows
        .iter()
        .filter_map(|r| r.1.map(|s| s.2))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
        y0 + 16.0,
        esc(title)
    );
    let mut y = y0 + 28.0;
    for (name, s) in rows {
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 15.0,
            esc(name)
        );
        match s {
            Some((m, lo, hi)) => {
                let x = |v: f64| LEFT + v / max * WIDTH;
                let _ = writeln!(
                    svg,
                    r##"<rect x="{LEFT:.0}" y="{:.0}" width="{:.1}" height="18" fill="#4a7ab5"/>"##,
                    y + 2.0,
                    x(*m) - LEFT
                );
                let cy = y + 11.0;
                let _ = writeln!(
                    svg,
                    r#"<path d="M{:.1} {cy:.1} H{:.1} M{:.1} {:.1} V{:.1} M{:.1} {:.1} V{:.1}" stroke="black" stroke-width="1.5"/>"#,
                    x(*lo),
                    x(*hi),
                    x(*lo),
                    cy - 6.0,
                    cy + 6.0,
                    x(*hi),
                    cy - 6.0,
                    cy + 6.0
                );
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.0}">{:.2}</text>"#,
                    x(*hi) + 6.0,
                    y + 15.0,
                    m
                );
            }
            None => {
                let _ = writeln!(
                    svg,
                    r##"<text x="{LEFT:.0}" y="{:.0}" fill="#888">not measured</text>"##,
                    y + 15.0
                );
            }
        }
        y += ROW;
    }
    y + 10.0
}

/// The chart: two panels (Mpps, Gbit/s), skipped contenders left out.
pub fn svg(results: &[Outcome], subtitle: &str) -> String {
    let shown: Vec<&Outcome> = results.iter().filter(|o| o.skipped.is_none()).collect();
    let scaled = |v: &[f64], k: f64| summary(v).map(|(m, lo, hi)| (m / k, lo / k, hi / k));
    let pps: Vec<(&str, _)> = shown
        .iter()
        .map(|o| (o.name.as_str(), scaled(&o.pps, 1e6)))
        .collect();
    let tcp: Vec<(&str, _)> = shown
        .iter()
        .map(|o| (o.name.as_str(), scaled(&o.gbps, 1.0)))
        .collect();
    let rows = shown.len() as f64;
    let height = 70.0 + 2.0 * (38.0 + 26.0 * rows) + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="780" height="{height:.0}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">Testbed: median of runs, whiskers min-max</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="42" fill="#444">{}</text>"##,
        esc(subtitle)
    );
    let y = panel(&mut s, 52.0, "64-byte frames at the sink (Mpps)", &pps);
    panel(&mut s, y, "TCP, one checked stream (Gbit/s)", &tcp);
    s.push_str("</svg>\n");
    s
}

/// `o`'s JSON form with its medians and its ratios to its reference (`null` where not measured).
fn with_summary(results: &[Outcome], o: &Outcome) -> serde_json::Value {
    let mut v = o.to_json();
    let med = |x: &[f64]| summary(x).map(|s| s.0);
    v["median"] = serde_json::json!({
        "pps": med(&o.pps),
        "tcp_gbps": med(&o.gbps),
        "connections_per_sec": med(&o.cps),
    });
    v["reference"] = reference(o).into();
    v["ratio"] = serde_json::json!({
        "pps": ratio(results, o, pps_of),
        "tcp_gbps": ratio(results, o, gbps_of),
        "connections_per_sec": ratio(results, o, cps_of),
    });
    v
}

/// Writes `testbed.svg` and `testbed.json` into `dir`.
pub fn write(
    dir: &Path,
    results: &[Outcome],
    meta: serde_json::Value,
    subtitle: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::json!({
        "meta": meta,
        "contenders": results.iter().map(|o| with_summary(results, o)).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("testbed.json"), text).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("testbed.svg"), svg(results, subtitle)).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_middle_and_the_ends() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(&[]), None);
    }

    #[test]
    fn svg_is_one_document_with_a_bar_per_measured_contender() {
        let a = Outcome {
            name: "a<b".into(),
            pps: vec![1e6, 2e6],
            gbps: vec![1.0],
            ..Default::default()
        };
        let b = Outcome {
            name: "skipped".into(),
            skipped: Some("not installed".into()),
            ..Default::default()
        };
        let s = svg(&[a, b], "sub");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<rect x=").count(), 2);
        assert!(s.contains("a&lt;b") && !s.contains("skipped"));
    }

    #[test]
    fn table_takes_each_ratio_against_its_own_reference() {
        let row = |name: &str, pps: f64, versus: Option<&str>| Outcome {
            name: name.into(),
            pps: vec![pps],
            gbps: vec![pps / 1e6],
            versus: versus.map(str::to_string),
            ..Default::default()
        };
        let t = table(&[
            row("linux bridge", 1e6, None),
            row("kernel nat", 2e6, Some("kernel nat")),
            row("our nat", 5e6, Some("kernel nat")),
        ]);
        let line = |n: &str| t.lines().find(|l| l.starts_with(n)).unwrap().to_string();
        assert!(line("kernel nat").contains(" 1.00 "), "{t}");
        assert!(line("our nat").contains(" 2.50 "), "{t}");
        assert!(line("our nat").ends_with("kernel nat"), "{t}");
        assert!(line("linux bridge").ends_with("linux bridge"), "{t}");
    }

    #[test]
    fn json_carries_medians_and_ratios_to_the_reference() {
        let row = |name: &str, pps: Vec<f64>, versus: Option<&str>| Outcome {
            name: name.into(),
            pps,
            gbps: vec![2.0],
            versus: versus.map(str::to_string),
            ..Default::default()
        };
        let all = [
            row("kernel vxlan", vec![1e5, 2e5, 3e5], Some("kernel vxlan")),
            row("ours", vec![4e5, 1e5, 5e5], Some("kernel vxlan")),
            row("no pps", vec![], Some("kernel vxlan")),
        ];
        let v = with_summary(&all, &all[1]);
        assert_eq!(v["median"]["pps"], 4e5);
        assert_eq!(v["ratio"]["pps"], 2.0);
        assert_eq!(v["ratio"]["tcp_gbps"], 1.0);
        assert_eq!(v["reference"], "kernel vxlan");
        let v = with_summary(&all, &all[2]);
        assert!(v["median"]["pps"].is_null() && v["ratio"]["pps"].is_null());
    }
}
