//! The campaign's search: proptest draws the cases, each runs as a whole scenario, the first failure is shrunk
//! (proptest's shrinking, each candidate a run), written out and run once more from the written file.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use super::draw::{case_strategy, Draw};
use super::failure_file::write_failure;
use super::layout::FaultSpace;
use super::{CampaignConfig, CampaignError, CampaignReport, CaseVerdict, FoundFailure, Progress};
use crate::run::RunOptions;
use crate::scenario::Scenario;
use crate::topology;

/// Runs a campaign over `base` with the real runner: each case is a whole run on the campaign's backend, or on
/// each of its backends (`search_across`).
pub fn search(
    base: &Scenario,
    config: &CampaignConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CampaignReport, CampaignError> {
    if config.backends.len() > 1 || config.backends.iter().any(|b| !topology::in_process(*b)) {
        return search_across(base, config, progress);
    }
    // Deterministic mode needs one thread, as `etl-harness run` gives it: a case and its rerun from the written
    // file must be the same run.
    let runtime = if base.topology.deterministic {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .map_err(CampaignError::Runtime)?;
    let execute = |scenario: &Scenario| -> Result<CaseVerdict, CampaignError> {
        let options = RunOptions {
            scenario_path: format!("<fault case seed {}>", scenario.seed),
            progress: false,
        };
        let outcome = runtime
            .block_on(crate::run::run(scenario, &options))
            .map_err(|error| CampaignError::Run {
                seed: scenario.seed,
                error: Box::new(error),
            })?;
        let failed = outcome
            .report
            .verdicts
            .iter()
            .filter(|v| !v.holds)
            .map(|v| v.invariant.to_string())
            .collect();
        Ok(CaseVerdict {
            failed,
            faults_injected: outcome.history.faults.len(),
            unapplied: unapplied(&outcome.history, None),
        })
    };
    search_with(base, config, progress, &execute)
}

/// A differential campaign: each case runs on every backend of `config.backends` with the same scenario and seed
/// ([`crate::run::diff::diff_on`]); the local runs share one topology, started once and shut down at the end. A
/// case fails when a backend breaks the property (`lost on local`) or the backends' verdicts differ (`liveness
/// differs between backends`).
fn search_across(
    base: &Scenario,
    config: &CampaignConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CampaignReport, CampaignError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CampaignError::Runtime)?;
    // The base must list every backend: listing one is what validates the scenario for it (a virtual clock or a
    // `crash` is refused for `local`).
    if let Some(backend) = config.backends.iter().find(|b| !base.backends.contains(b)) {
        return Err(CampaignError::Run {
            seed: base.seed,
            error: Box::new(crate::run::RunError::NotListed {
                scenario: base.name.clone(),
                backend: backend.name(),
            }),
        });
    }
    let run_error = |error| CampaignError::Run {
        seed: base.seed,
        error: Box::new(error),
    };
    let session = match config
        .backends
        .iter()
        .find(|b| topology::runs_in_local_session(**b))
    {
        Some(backend) => {
            let session = runtime
                .block_on(topology::start_session(*backend, base))
                .map_err(run_error)?;
            Some(RefCell::new(session))
        }
        None => None,
    };
    let execute = |scenario: &Scenario| -> Result<CaseVerdict, CampaignError> {
        let options = RunOptions {
            scenario_path: format!("<fault case seed {}>", scenario.seed),
            progress: false,
        };
        let mut local = session.as_ref().map(|s| s.borrow_mut());
        let diff = runtime
            .block_on(crate::run::diff::diff_on(
                scenario,
                &options,
                &config.backends,
                local.as_deref_mut(),
            ))
            .map_err(|error| CampaignError::Run {
                seed: scenario.seed,
                error: Box::new(error),
            })?;
        Ok(differential_verdict(&diff))
    };
    let result = search_with(base, config, progress, &execute);
    if let Some(session) = session {
        runtime.block_on(session.into_inner().shutdown());
    }
    result
}

/// A case on several backends: every invariant a backend broke (`lost on local`), then every invariant whose
/// verdict differs between them; the faults the fewest-injecting backend recorded.
fn differential_verdict(diff: &crate::run::diff::Diff) -> CaseVerdict {
    let mut failed: Vec<String> = Vec::new();
    for (backend, outcome) in &diff.runs {
        for v in outcome.report.verdicts.iter().filter(|v| !v.holds) {
            failed.push(format!("{} on {}", v.invariant, backend.name()));
        }
    }
    for invariant in diff.disagreements() {
        failed.push(format!("{invariant} differs between backends"));
    }
    CaseVerdict {
        failed,
        faults_injected: diff
            .runs
            .iter()
            .map(|(_, o)| o.history.faults.len())
            .min()
            .unwrap_or(0),
        unapplied: diff
            .runs
            .iter()
            .flat_map(|(backend, o)| unapplied(&o.history, Some(backend.name())))
            .collect(),
    }
}

/// The faults of a run that its backend could not apply, with the reason.
fn unapplied(history: &crate::history::History, backend: Option<&str>) -> Vec<String> {
    history
        .faults
        .iter()
        .filter_map(|f| {
            let error = f.error.as_ref()?;
            let on = backend.map(|b| format!(" on {b}")).unwrap_or_default();
            Some(format!("{} {}{on}: {error}", f.action, f.target))
        })
        .collect()
}

/// How many reasons of incomplete cases a report keeps.
const INCOMPLETE_EXAMPLES: usize = 5;

/// The campaign over any executor of cases (the real runner, or a model in unit tests).
pub(crate) fn search_with(
    base: &Scenario,
    config: &CampaignConfig,
    progress: &mut dyn FnMut(&Progress),
    execute: &dyn Fn(&Scenario) -> Result<CaseVerdict, CampaignError>,
) -> Result<CampaignReport, CampaignError> {
    let space = FaultSpace::of(base, &config.backends)?;
    let strategy = case_strategy(config.mix);
    let proptest_config = Config {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_runs,
        max_shrink_time: 0,
        failure_persistence: None,
        fork: false,
        timeout: 0,
        verbose: 0,
        rng_seed: RngSeed::Fixed(config.seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(proptest_config);

    // proptest calls the property through `Fn`: the campaign's state lives in cells.
    let progress = RefCell::new(progress);
    let error: RefCell<Option<CampaignError>> = RefCell::new(None);
    let started = Instant::now();
    let cases = Cell::new(0u32);
    let cases_without_faults = Cell::new(0u32);
    let cases_incomplete = Cell::new(0u32);
    let incomplete_examples: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let search_time = Cell::new(None::<Duration>);
    let shrink_runs = Cell::new(0u32);
    let first_faults = Cell::new(0usize);
    let last_failed: RefCell<Vec<String>> = RefCell::new(Vec::new());

    let result = runner.run(&strategy, |draw: Draw| {
        if error.borrow().is_some() {
            // An infrastructure error ends the campaign; the runner is told every case holds so it stops
            // shrinking quickly and the error is returned below.
            return Ok(());
        }
        let scenario = match space.scenario(&draw) {
            Ok(s) => s,
            Err(e) => {
                *error.borrow_mut() = Some(e);
                return Ok(());
            }
        };
        let shrinking = search_time.get().is_some();
        let verdict = match execute(&scenario) {
            Ok(v) => v,
            // While shrinking, a candidate that cannot be run is simply not a smaller failure.
            Err(_) if shrinking => {
                shrink_runs.set(shrink_runs.get() + 1);
                return Ok(());
            }
            Err(e) => {
                *error.borrow_mut() = Some(e);
                return Ok(());
            }
        };
        if !scenario.faults.is_empty() && verdict.faults_injected == 0 {
            if !shrinking {
                *error.borrow_mut() = Some(CampaignError::NemesisNotWired {
                    seed: scenario.seed,
                    scheduled: scenario.faults.len(),
                });
            }
            return Ok(());
        }
        let incomplete = !verdict.unapplied.is_empty();
        if shrinking {
            shrink_runs.set(shrink_runs.get() + 1);
            if incomplete {
                // A candidate whose schedule did not run as drawn is not a smaller failure.
                return Ok(());
            }
            (progress.borrow_mut())(&Progress::Shrink {
                attempt: shrink_runs.get(),
                faults: scenario.faults.len(),
                still_fails: !verdict.held(),
            });
        } else {
            cases.set(cases.get() + 1);
            if scenario.faults.is_empty() {
                cases_without_faults.set(cases_without_faults.get() + 1);
            }
            if incomplete {
                cases_incomplete.set(cases_incomplete.get() + 1);
                let mut examples = incomplete_examples.borrow_mut();
                for reason in &verdict.unapplied {
                    if examples.len() < INCOMPLETE_EXAMPLES {
                        examples.push(format!("seed {}: {reason}", scenario.seed));
                    }
                }
            }
            (progress.borrow_mut())(&Progress::Case {
                number: cases.get(),
                seed: scenario.seed,
                faults: scenario.faults.len(),
                held: verdict.held(),
                unapplied: verdict.unapplied.clone(),
                elapsed: started.elapsed(),
            });
        }
        if verdict.held() || incomplete {
            return Ok(());
        }
        if !shrinking {
            search_time.set(Some(started.elapsed()));
            first_faults.set(scenario.faults.len());
        }
        *last_failed.borrow_mut() = verdict.failed.clone();
        Err(TestCaseError::fail(format!(
            "seed {}: {} failed",
            scenario.seed,
            verdict.failed.join(", ")
        )))
    });
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    let search_time = search_time.get().unwrap_or_else(|| started.elapsed());
    let mut report = CampaignReport {
        cases: cases.get(),
        cases_without_faults: cases_without_faults.get(),
        cases_incomplete: cases_incomplete.get(),
        incomplete_examples: incomplete_examples.into_inner(),
        search_time,
        failure: None,
    };
    let minimal = match result {
        Ok(()) => return Ok(report),
        Err(TestError::Abort(reason)) => return Err(CampaignError::Aborted(reason.to_string())),
        Err(TestError::Fail(_, draw)) => draw,
    };
    // The runner returns the last draw that failed; its verdict was recorded when it ran.
    let scenario = space.scenario(&minimal)?;
    let failed = last_failed.into_inner();
    let path = write_failure(
        &config.out_dir,
        &scenario,
        &failed,
        config.seed,
        &config.backends,
    )?;
    let reloaded = Scenario::load(&path).map_err(|errors| CampaignError::Reload {
        path: path.clone(),
        errors,
    })?;
    let rerun_failed = execute(&reloaded)?.failed;
    report.failure = Some(FoundFailure {
        scenario: reloaded,
        path,
        failed,
        original_faults: first_faults.get(),
        shrink_runs: shrink_runs.get(),
        rerun_failed,
        backends: config.backends.clone(),
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::{base_scenario, SAFE_BASE};
    use super::*;
    use crate::scenario::{Expect, FaultAction, Millis};

    fn base() -> Scenario {
        base_scenario(SAFE_BASE, "SAFE_BASE").expect("the safe base parses")
    }

    /// A model of the pipeline: the property breaks exactly when a broker is killed (by id or by role).
    fn breaks_on_kill(scenario: &Scenario) -> Result<CaseVerdict, CampaignError> {
        let killed = scenario
            .faults
            .iter()
            .any(|f| f.action == FaultAction::Kill && f.target.is_broker());
        Ok(CaseVerdict {
            failed: if killed { vec!["lost".into()] } else { vec![] },
            faults_injected: scenario.faults.len(),
            unapplied: vec![],
        })
    }

    #[test]
    fn a_failure_shrinks_to_one_early_kill_and_is_written_as_a_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CampaignConfig::new(200, 11, dir.path());
        config.max_shrink_runs = 500;
        let report = search_with(&base(), &config, &mut |_| {}, &breaks_on_kill).unwrap();
        let failure = report.failure.expect("a kill is drawn within 200 cases");
        let faults = &failure.scenario.faults;
        // One episode is left: a kill and, when it was by id, its restart; shrunk to the start of the run.
        assert!((1..=2).contains(&faults.len()), "not minimal: {faults:#?}");
        assert_eq!(faults[0].action, FaultAction::Kill, "{faults:#?}");
        assert_eq!(
            faults[0].at,
            Millis(0),
            "not shrunk to the earliest time: {faults:#?}"
        );
        assert!(failure.original_faults >= faults.len());
        assert_eq!(failure.failed, vec!["lost".to_string()]);
        assert!(failure.reproduced(), "{failure:#?}");
        // The file on disk is the scenario, with its seed, and says how to reproduce it.
        let text = std::fs::read_to_string(&failure.path).unwrap();
        assert!(text.contains(&failure.reproduce()), "{text}");
        let again = Scenario::load(&failure.path).unwrap();
        assert_eq!(again.faults, *faults);
        assert_eq!(again.seed, failure.scenario.seed);
        assert_eq!(again.expectations(), Expect::default());
    }

    #[test]
    fn a_campaign_where_every_case_holds_runs_every_case() {
        let dir = tempfile::tempdir().unwrap();
        let config = CampaignConfig::new(25, 3, dir.path());
        let mut seen = 0;
        let holds = |s: &Scenario| -> Result<CaseVerdict, CampaignError> {
            Ok(CaseVerdict {
                failed: vec![],
                faults_injected: s.faults.len(),
                unapplied: vec![],
            })
        };
        let report = search_with(
            &base(),
            &config,
            &mut |p| {
                if let Progress::Case { held, .. } = p {
                    assert!(held);
                    seen += 1;
                }
            },
            &holds,
        )
        .unwrap();
        assert_eq!(report.cases, 25);
        assert_eq!(seen, 25);
        assert!(report.failure.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_differential_campaign_needs_a_base_listing_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CampaignConfig::new(2, 3, dir.path());
        config.backends = vec![
            crate::topology::default_backend(),
            crate::scenario::Backend::Local,
        ];
        // The safe base lists the embedded backend only: refused before anything starts.
        let error = search(&base(), &config, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("local"), "{error}");
    }

    #[test]
    fn a_differential_failure_is_reproduced_by_diff_on_its_backends() {
        let path = std::path::Path::new("failures/case-seed9.toml");
        let both = [
            crate::topology::default_backend(),
            crate::scenario::Backend::Local,
        ];
        assert_eq!(
            super::super::report::reproduce(path, &both, 9),
            "etl-harness diff failures/case-seed9.toml --backends embedded,local --seed 9"
        );
        assert_eq!(
            super::super::report::reproduce(path, &both[..1], 9),
            "etl-harness run failures/case-seed9.toml --seed 9"
        );
    }

    /// A model of two backends judged by the real checkers on an empty history (nothing lost, nothing
    /// reordered): each backend quiesces unless the schedule kills a broker (by id or by role) and the model
    /// says that backend then stalls. The case's verdict is [`differential_verdict`] of their [`Diff`].
    fn two_backends(
        scenario: &Scenario,
        embedded_stalls_on_kill: bool,
        local_stalls_on_kill: bool,
    ) -> Result<CaseVerdict, CampaignError> {
        use crate::check::{FinalStates, Liveness};
        use crate::history::{FaultPhase, FaultRecord, History};
        use crate::scenario::Backend;
        let killed = scenario
            .faults
            .iter()
            .any(|f| f.action == FaultAction::Kill && f.target.is_broker());
        let run = |backend: Backend, stalls_on_kill: bool| {
            let mut on = scenario.clone();
            on.topology.backend = backend;
            let faults = scenario.faults.iter().enumerate();
            let history = History {
                faults: faults
                    .map(|(i, f)| FaultRecord {
                        at_ms: f.at.0 as i64,
                        action: f.action.name().to_string(),
                        target: f.target.to_string(),
                        resolved: f.target.to_string(),
                        due_ms: f.at.0,
                        fault: Some(i),
                        phase: FaultPhase::Scheduled,
                        error: None,
                    })
                    .collect(),
                ..History::default()
            };
            let liveness = if killed && stalls_on_kill {
                Liveness::TimedOut {
                    waited_ms: 90_000,
                    pending: vec!["capture: behind the last commit".into()],
                }
            } else {
                Liveness::Quiesced
            };
            let options = RunOptions {
                scenario_path: "<model>".into(),
                progress: false,
            };
            let outcome = crate::run::judge(
                &on,
                &options,
                Instant::now(),
                history,
                FinalStates::default(),
                &liveness,
                None,
            );
            (backend, outcome)
        };
        let diff = crate::run::diff::Diff {
            runs: vec![
                run(Backend::Embedded, embedded_stalls_on_kill),
                run(Backend::Local, local_stalls_on_kill),
            ],
        };
        Ok(differential_verdict(&diff))
    }

    fn differential_config(dir: &std::path::Path) -> CampaignConfig {
        use crate::scenario::Backend;
        let mut config = CampaignConfig::new(200, 11, dir);
        config.backends = vec![Backend::Embedded, Backend::Local];
        config.max_shrink_runs = 500;
        config
    }

    fn differential_base() -> Scenario {
        base_scenario(super::super::DIFFERENTIAL_BASE, "DIFFERENTIAL_BASE")
            .expect("the differential base parses")
    }

    #[test]
    fn backends_that_hold_and_agree_pass_every_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = differential_config(dir.path());
        config.cases = 30;
        let agree = |s: &Scenario| two_backends(s, false, false);
        let report = search_with(&differential_base(), &config, &mut |_| {}, &agree).unwrap();
        assert_eq!(report.cases, 30);
        assert!(report.failure.is_none());
    }

    #[test]
    fn differing_verdicts_fail_the_case_and_the_shrunk_file_lists_every_backend() {
        use crate::scenario::Backend;
        let dir = tempfile::tempdir().unwrap();
        let config = differential_config(dir.path());
        // The local backend stalls after a kill, the embedded one does not: its liveness holds, so only the
        // disagreement and local's own verdict fail the case.
        let local_stalls = |s: &Scenario| two_backends(s, false, true);
        let report =
            search_with(&differential_base(), &config, &mut |_| {}, &local_stalls).unwrap();
        let failure = report.failure.expect("a kill is drawn within 200 cases");
        assert_eq!(
            failure.failed,
            ["liveness on local", "liveness differs between backends"],
            "{failure:#?}"
        );
        assert!(failure.reproduced(), "{failure:#?}");
        let faults = &failure.scenario.faults;
        assert!((1..=2).contains(&faults.len()), "not minimal: {faults:#?}");
        assert_eq!(faults[0].action, FaultAction::Kill, "{faults:#?}");
        // The file lists both backends (so it validates for local) and says to diff it on them.
        assert_eq!(
            failure.reproduce(),
            format!(
                "etl-harness diff {} --backends embedded,local --seed {}",
                failure.path.display(),
                failure.scenario.seed
            )
        );
        let text = std::fs::read_to_string(&failure.path).unwrap();
        assert!(text.contains(&failure.reproduce()), "{text}");
        assert!(
            text.contains("liveness on local, liveness differs between backends"),
            "{text}"
        );
        let again = Scenario::load(&failure.path).unwrap();
        assert_eq!(again.backends, [Backend::Embedded, Backend::Local]);
        assert_eq!(again.faults, *faults);
        assert_eq!(again.seed, failure.scenario.seed);
        assert!(!again.topology.deterministic);
        assert_eq!(again.expectations(), Expect::default());
    }

    #[test]
    fn backends_that_break_the_property_alike_fail_the_case_without_a_disagreement() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = differential_config(dir.path());
        config.max_shrink_runs = 8;
        let both_stall = |s: &Scenario| two_backends(s, true, true);
        let report = search_with(&differential_base(), &config, &mut |_| {}, &both_stall).unwrap();
        let failure = report.failure.expect("a kill is drawn within 200 cases");
        assert_eq!(
            failure.failed,
            ["liveness on embedded", "liveness on local"],
            "{failure:#?}"
        );
    }

    #[test]
    fn a_case_with_a_fault_a_backend_could_not_apply_is_incomplete_neither_held_nor_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CampaignConfig::new(40, 5, dir.path());
        config.max_shrink_runs = 200;
        // Every case with a kill "fails", but a case whose kill could not be applied proves nothing: with every
        // kill unapplied, the campaign finds no failure and counts those cases as incomplete.
        let unapplied_kills = |s: &Scenario| -> Result<CaseVerdict, CampaignError> {
            let kills: Vec<String> = s
                .faults
                .iter()
                .filter(|f| f.action == FaultAction::Kill)
                .map(|f| format!("kill {} on local: refused", f.target))
                .collect();
            Ok(CaseVerdict {
                failed: if kills.is_empty() {
                    vec![]
                } else {
                    vec!["lost".into()]
                },
                faults_injected: s.faults.len(),
                unapplied: kills,
            })
        };
        let mut incomplete_seen = 0;
        let report = search_with(
            &base(),
            &config,
            &mut |p| {
                if let Progress::Case { unapplied, .. } = p {
                    incomplete_seen += u32::from(!unapplied.is_empty());
                }
            },
            &unapplied_kills,
        )
        .unwrap();
        assert!(report.failure.is_none(), "{:#?}", report.failure);
        assert_eq!(report.cases, 40);
        assert!(
            report.cases_incomplete > 0,
            "a kill is drawn within 40 cases"
        );
        assert_eq!(report.cases_incomplete, incomplete_seen);
        assert!(
            report.incomplete_examples[0].contains("on local: refused"),
            "{:?}",
            report.incomplete_examples
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn faults_the_run_did_not_inject_stop_the_campaign() {
        let dir = tempfile::tempdir().unwrap();
        let config = CampaignConfig::new(5, 3, dir.path());
        let not_injected = |_: &Scenario| -> Result<CaseVerdict, CampaignError> {
            Ok(CaseVerdict {
                failed: vec![],
                faults_injected: 0,
                unapplied: vec![],
            })
        };
        let error = search_with(&base(), &config, &mut |_| {}, &not_injected).unwrap_err();
        assert!(
            error.to_string().starts_with("nemesis not wired"),
            "{error}"
        );
    }
}
