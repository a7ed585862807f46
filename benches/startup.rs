//! Time from start to the connector streaming, the local backend (processes) against the containers backend, in
//! one run, alternating: `etl-harness up --backend <b> --scenario scenarios/quickstart.toml` from its start until
//! its `ready:` line (MariaDB with the schema, ZooKeeper, three brokers, Connect, quickstart's topics created, the
//! Debezium connector and its task RUNNING), then Ctrl-C until it has stopped everything.
//!
//! Run: `cargo bench --bench startup` (needs what both backends need: mariadbd, java and mvn, and a container
//! daemon with the images built). `STARTUP_ROUNDS` (default 3) sets the rounds. Prints a table; the numbers go to
//! docs/benchmarks.md with the date.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Seconds to `ready:` and seconds from Ctrl-C to exit.
fn up_once(backend: &str) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "up",
            "--backend",
            backend,
            "--scenario",
            "scenarios/quickstart.toml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting etl-harness up: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (lines, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let ready = loop {
        match heard.recv_timeout(READY_TIMEOUT.saturating_sub(started.elapsed())) {
            Ok(line) if line.starts_with("ready:") => break started.elapsed().as_secs_f64(),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{backend}: no ready line within {READY_TIMEOUT:?}"));
            }
        }
    };
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                return Err(format!("{backend}: up exited with {status} after Ctrl-C"));
            }
            break;
        }
        if stopping.elapsed() > STOP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{backend}: still running {STOP_TIMEOUT:?} after Ctrl-C"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((ready, stopping.elapsed().as_secs_f64()))
}

fn main() {
    let rounds: usize = std::env::var("STARTUP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let backends = ["local", "containers"];
    let mut measured: Vec<Vec<(f64, f64)>> = vec![Vec::new(); backends.len()];
    for round in 1..=rounds {
        for (i, backend) in backends.iter().enumerate() {
            match up_once(backend) {
                Ok((ready, stop)) => {
                    println!("round {round} {backend}: ready after {ready:.1} s, stopped {stop:.1} s after Ctrl-C");
                    measured[i].push((ready, stop));
                }
                Err(e) => {
                    eprintln!("startup bench: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    println!("\n| backend | to ready (connector RUNNING), each round | median | Ctrl-C to stopped, median |");
    println!("|---|---|---|---|");
    for (backend, runs) in backends.iter().zip(&measured) {
        let median = |pick: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let each: Vec<String> = runs.iter().map(|(r, _)| format!("{r:.1} s")).collect();
        println!(
            "| {backend} | {} | {:.1} s | {:.1} s |",
            each.join(", "),
            median(|m| m.0),
            median(|m| m.1)
        );
    }
}
