//! `etl-harness test [PATHS…]`: a suite runner for CI. Every scenario found (files, and the `*.toml` files of
//! directories, default `scenarios/`), optionally filtered by name, runs on its own topology — several at once on
//! the embedded backend (`--jobs`), one at a time on the local one (its services share the machine's ports and
//! cores) — with a line per scenario as `cargo test` prints them and a closing `N passed, N failed, N skipped`.
//! `--junit FILE` writes a JUnit XML report (one testcase per scenario and backend; a failure's message carries
//! the seed and the command that reproduces it; the report is the testcase's system-out). `--backends` runs each
//! scenario on every backend it lists, through the diff, and fails one whose verdicts differ.
//!
//! Exit status as `run`: 0 all passed, 1 an expectation failed or backends disagreed, 2 a scenario could not be
//! loaded or run (this wins over 1: the suite did not run what it was asked to).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::run::{RunError, RunOptions};
use crate::scenario::{Backend, Scenario};

/// Arguments of `etl-harness test`.
#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// Scenario files or directories of them (default: scenarios/).
    pub paths: Vec<PathBuf>,
    /// Only scenarios whose name (or file stem) contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// How many scenarios run at once on the embedded backend (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Run each scenario on every backend it lists and fail it when their verdicts differ.
    #[arg(long)]
    pub backends: bool,
}

/// How one scenario (on one backend, or compared across its backends) ended.
#[derive(Debug, Clone)]
enum Outcome {
    Passed { report: String },
    Failed { message: String, report: String },
    Error { message: String },
    Skipped { reason: String },
}

#[derive(Debug, Clone)]
struct Case {
    /// `<scenario name> [<backend>]`, or `[<b1>,<b2>]` with `--backends`.
    name: String,
    file: PathBuf,
    outcome: Outcome,
    took: Duration,
}

/// The scenario files below `paths`, sorted, without duplicates.
fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let defaults = [PathBuf::from("scenarios")];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| format!("{}: cannot read the directory: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.dedup();
    Ok(files)
}

/// Runs one scenario file (on its own backend, or with `compare` on every backend it lists).
fn run_one(file: &Path, scenario: &Scenario, compare: bool) -> Outcome {
    let options = RunOptions {
        scenario_path: file.display().to_string(),
        progress: false,
    };
    let runtime = match crate::run::runtime(scenario) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Error {
                message: format!("cannot start the async runtime: {e}"),
            }
        }
    };
    if compare {
        let reproduce = format!(
            "etl-harness diff {} --backends {} --seed {}",
            file.display(),
            backend_list(&scenario.backends),
            scenario.seed
        );
        return match runtime.block_on(crate::run::diff::diff(
            scenario,
            &options,
            &scenario.backends,
        )) {
            Err(e) => Outcome::Error {
                message: format!("{e}; seed {}; reproduce with: {reproduce}", scenario.seed),
            },
            Ok(diff) if diff.agree() => Outcome::Passed {
                report: diff.table(),
            },
            Ok(diff) => Outcome::Failed {
                message: format!(
                    "the backends disagree on: {}; seed {}; reproduce with: {reproduce}",
                    diff.disagreements().join(", "),
                    scenario.seed
                ),
                report: diff.table(),
            },
        };
    }
    let reproduce = format!(
        "etl-harness run {} --backend {} --seed {}",
        file.display(),
        scenario.topology.backend.name(),
        scenario.seed
    );
    match runtime.block_on(crate::run::run(scenario, &options)) {
        Err(RunError::BackendUnavailable(backend)) => Outcome::Skipped {
            reason: format!("backend `{backend}` cannot run scenarios yet"),
        },
        Err(e) => Outcome::Error {
            message: format!("{e}; seed {}; reproduce with: {reproduce}", scenario.seed),
        },
        Ok(outcome) if outcome.report.passed() => Outcome::Passed {
            report: outcome.report.terminal(),
        },
        Ok(outcome) => Outcome::Failed {
            message: format!(
                "expectations failed; seed {}; reproduce with: {reproduce}",
                scenario.seed
            ),
            report: outcome.report.terminal(),
        },
    }
}

fn backend_list(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// One unit of work: a loaded scenario, or the error that kept it from loading.
struct Job {
    file: PathBuf,
    name: String,
    scenario: Result<Scenario, String>,
}

/// Runs the suite; returns the process exit code (0, 1 or 2).
pub fn run(args: TestArgs) -> u8 {
    let files = match scenario_files(&args.paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("etl-harness test: {message}");
            return 2;
        }
    };
    let mut jobs: Vec<Job> = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scenario = Scenario::load(&file).map_err(|e| e.to_string());
        let name = scenario
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or(stem.clone());
        if let Some(filter) = &args.filter {
            if !name.contains(filter.as_str()) && !stem.contains(filter.as_str()) {
                continue;
            }
        }
        jobs.push(Job {
            file,
            name,
            scenario,
        });
    }
    println!("running {} scenarios", jobs.len());
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Taken from the back: reversed, so scenarios start in file order.
    let queue = Arc::new(Mutex::new(
        jobs.into_iter().enumerate().rev().collect::<Vec<_>>(),
    ));
    let results: Arc<Mutex<Vec<(usize, Case)>>> = Arc::new(Mutex::new(Vec::new()));
    // Runs on services (local, and anything compared across backends) take the machine: one at a time.
    let services = Arc::new(Mutex::new(()));
    let compare = args.backends;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let queue = queue.clone();
            let results = results.clone();
            let services = services.clone();
            scope.spawn(move || loop {
                let Some((index, job)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop()
                else {
                    break;
                };
                let started = Instant::now();
                let (label, outcome) = match &job.scenario {
                    Err(message) => (
                        job.name.clone(),
                        Outcome::Error {
                            message: message.clone(),
                        },
                    ),
                    Ok(scenario) => {
                        let label = if compare {
                            format!("{} [{}]", job.name, backend_list(&scenario.backends))
                        } else {
                            format!("{} [{}]", job.name, scenario.topology.backend.name())
                        };
                        let exclusive = compare || scenario.topology.backend != Backend::Embedded;
                        let outcome = if exclusive {
                            let _machine = services.lock().unwrap_or_else(|e| e.into_inner());
                            run_one(&job.file, scenario, compare)
                        } else {
                            run_one(&job.file, scenario, compare)
                        };
                        (label, outcome)
                    }
                };
                let case = Case {
                    name: label,
                    file: job.file.clone(),
                    outcome,
                    took: started.elapsed(),
                };
                print_line(&case);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((index, case));
            });
        }
    });
    let mut cases: Vec<(usize, Case)> =
        std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    cases.sort_by_key(|(i, _)| *i);
    let cases: Vec<Case> = cases.into_iter().map(|(_, c)| c).collect();
    summarise(&cases, args.junit.as_deref())
}

fn print_line(case: &Case) {
    let took = case.took.as_secs_f64();
    match &case.outcome {
        Outcome::Passed { .. } => println!("test {} ... ok ({took:.1} s)", case.name),
        Outcome::Failed { report, message } => {
            println!("test {} ... FAILED ({took:.1} s)", case.name);
            print!("{report}");
            // A run's report ends with the seed and the command that reproduces it; a diff's table does not.
            if !report.contains("reproduce with") {
                println!("  {message}");
            }
        }
        Outcome::Error { message } => {
            println!("test {} ... ERROR ({took:.1} s)", case.name);
            println!("  {}: {message}", case.file.display());
        }
        Outcome::Skipped { reason } => println!("test {} ... skipped: {reason}", case.name),
    }
}

fn summarise(cases: &[Case], junit: Option<&Path>) -> u8 {
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Passed { .. }));
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    let errors = count(|o| matches!(o, Outcome::Error { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
    let mut line = format!("{passed} passed, {failed} failed, {skipped} skipped");
    if errors > 0 {
        line.push_str(&format!(", {errors} could not run"));
    }
    println!("\ntest result: {line}");
    if let Some(path) = junit {
        if let Err(message) = write_junit(cases, path) {
            eprintln!("etl-harness test: {message}");
            return 2;
        }
    }
    if errors > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}

fn write_junit(cases: &[Case], path: &Path) -> Result<(), String> {
    let mut suite = TestSuite::new("etl-harness");
    for case in cases {
        let (status, report) = match &case.outcome {
            Outcome::Passed { report } => (TestCaseStatus::success(), Some(report.clone())),
            Outcome::Failed { message, report } => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(message.clone());
                (status, Some(report.clone()))
            }
            Outcome::Error { message } => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(message.clone());
                (status, None)
            }
            Outcome::Skipped { reason } => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(reason.clone());
                (status, None)
            }
        };
        let mut test_case = TestCase::new(case.name.clone(), status);
        test_case
            .set_classname(case.file.display().to_string())
            .set_time(case.took);
        if let Some(report) = report {
            test_case.set_system_out(report);
        }
        suite.add_test_case(test_case);
    }
    let mut report = Report::new("etl-harness test");
    report.add_test_suite(suite);
    let xml = report
        .to_string()
        .map_err(|e| format!("cannot render the JUnit report: {e}"))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
    }
    std::fs::write(path, xml).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
