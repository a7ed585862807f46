//! Generator throughput on one core: obs rows per second of the in-memory stream (target: >= 1,000,000/s),
//! for an obs-heavy mix and for the default mix, plus the cost of rendering JSON lines.
//!
//! Run: `cargo bench --bench workload` (numbers are reported in docs/benchmarks.md, never asserted).

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

use std::hint::black_box;
use std::time::Instant;

use openmrs_etl_harness::workload::{sql, ChangeKind, Generator, Mix, WorkloadSpec};

fn obs_rows_per_second(name: &str, spec: &WorkloadSpec, render_json: bool) {
    // `cargo bench --bench workload -- obs-heavy` runs only the matching benchmarks.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    // Warm up once, then keep the best of three, by CPU time on the one thread that runs.
    let mut best = f64::MAX;
    let mut best_wall = f64::MAX;
    let mut obs = 0u64;
    let mut bytes = 0usize;
    for round in 0..4 {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let mut n = 0u64;
        let mut out = String::new();
        for op in Generator::new(spec, 42) {
            n += op
                .changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Insert && c.table.name == "obs")
                .count() as u64;
            if render_json {
                sql::write_operation_json(&mut out, &op);
                bytes += out.len();
                out.clear();
            }
            black_box(&op);
        }
        let secs = cpu_seconds() - cpu_start;
        if round > 0 && secs < best {
            best = secs;
            best_wall = start.elapsed().as_secs_f64();
        }
        obs = n;
    }
    println!(
        "{name:<26} {:>7} ops {:>9} obs rows in {:>6.3} s CPU ({:.3} s wall): {:>9.0} obs rows/s{}",
        spec.operations,
        obs,
        best,
        best_wall,
        obs as f64 / best,
        if render_json {
            format!(", {:.0} MB/s of JSON", bytes as f64 / 4.0 / best / 1e6)
        } else {
            String::new()
        }
    );
}

fn main() {
    let obs_heavy = Mix {
        register_patient: 1.0,
        start_visit: 0.0,
        stop_visit: 0.0,
        vitals: 60.0,
        lab_results: 20.0,
        diagnosis: 20.0,
        new_order: 0.0,
        revise_order: 0.0,
        discontinue_order: 0.0,
        edit_obs: 0.0,
        void_encounter: 0.0,
        update_demographics: 0.0,
        purge_obs: 0.0,
    };
    let heavy = WorkloadSpec {
        patients: 10_000,
        operations: 300_000,
        mix: obs_heavy,
        ..WorkloadSpec::default()
    };
    let default = WorkloadSpec {
        patients: 10_000,
        operations: 300_000,
        ..WorkloadSpec::default()
    };
    obs_rows_per_second("obs-heavy mix", &heavy, false);
    obs_rows_per_second("default mix", &default, false);
    obs_rows_per_second("default mix + JSON lines", &default, true);
}
