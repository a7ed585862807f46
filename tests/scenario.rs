//! Scenario files: every shipped scenario validates and round-trips; every file of the bad corpus gives its
//! own located message and exit status 2; no mangled file makes the parser panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use openmrs_etl_harness::scenario::{FaultTarget, Scenario};
use proptest::prelude::*;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn shipped_scenarios_validate_and_round_trip() {
    let shipped = files("scenarios");
    assert!(!shipped.is_empty());
    for path in shipped {
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let printed = s.to_toml();
        let again = Scenario::parse(&printed, "resolved.toml")
            .unwrap_or_else(|e| panic!("{}: resolved form: {e}\n{printed}", path.display()));
        assert_eq!(again.to_toml(), printed, "{}", path.display());
        assert_eq!(again.workload_spec(), s.workload_spec());
    }
}

#[test]
fn bad_corpus_gives_each_its_own_located_message() {
    let bad = files("tests/bad-scenarios");
    assert!(bad.len() >= 20, "the corpus shrank");
    let mut messages = Vec::new();
    for path in &bad {
        let text = std::fs::read_to_string(path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line: # expect: <message>");
        let name = path.file_name().unwrap().to_str().unwrap();
        let err = Scenario::parse(&text, name).expect_err(name).to_string();
        assert!(
            err.contains(expected),
            "{name}:\n  expected: {expected}\n  found:    {err}"
        );
        messages.push(err);
    }
    messages.sort();
    messages.dedup();
    assert_eq!(
        messages.len(),
        bad.len(),
        "two corpus files gave the same message"
    );
}

#[test]
fn cli_exits_2_with_the_message_on_stderr() {
    for path in files("tests/bad-scenarios") {
        let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&*path.to_string_lossy()), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let ok = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args(["validate", "scenarios/quickstart.toml"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("[topics.tables.obs]"));
}

#[test]
fn unreadable_file_is_a_located_error() {
    let err = Scenario::load(Path::new("no/such/scenario.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("no/such/scenario.toml:1:1: cannot read the scenario file"),
        "{err}"
    );
}

fn quickstart() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml"))
        .unwrap()
}

/// One edit of a scenario text.
#[derive(Debug, Clone)]
enum Mangle {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    ReplaceValue { line: usize, value: String },
}

fn mangle_strategy() -> impl Strategy<Value = Mangle> {
    let token = prop_oneof![
        Just("[".to_string()),
        Just("]]".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("\"7x\"".to_string()),
        Just(
            "[[faults]]\nat=\"1s\"\naction=\"kill\"\ntarget=\"leader of x partition 9\"\n"
                .to_string()
        ),
        "[ -~]{0,12}",
        "\\PC{0,4}",
    ];
    let value = prop_oneof![
        Just("0".to_string()),
        Just("-3".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("\"999999999999d\"".to_string()),
        Just("\"a follower of dbserver1.openmrs.obs p 99\"".to_string()),
        Just("true".to_string()),
        "[ -~]{0,10}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mangle::Delete { at, len }),
        (any::<usize>(), token).prop_map(|(at, text)| Mangle::Insert { at, text }),
        any::<usize>().prop_map(|line| Mangle::DuplicateLine { line }),
        (any::<usize>(), value).prop_map(|(line, value)| Mangle::ReplaceValue { line, value }),
    ]
}

fn apply(text: &str, m: &Mangle) -> String {
    let boundary = |s: &str, at: usize| {
        let mut i = at % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match m {
        Mangle::Delete { at, len } => {
            let a = boundary(text, *at);
            let b = boundary(text, a + len);
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Mangle::Insert { at, text: t } => {
            let a = boundary(text, *at);
            format!("{}{t}{}", &text[..a], &text[a..])
        }
        Mangle::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let i = line % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.join("\n")
        }
        Mangle::ReplaceValue { line, value } => {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let with_value: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains('='))
                .collect();
            if !with_value.is_empty() {
                let i = with_value[line % with_value.len()];
                let key = lines[i].split('=').next().unwrap_or("").to_string();
                lines[i] = format!("{key}= {value}");
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    /// Any mangled scenario parses or gives located errors; it never panics, and errors point inside the file.
    #[test]
    fn mangled_scenarios_never_panic(edits in proptest::collection::vec(mangle_strategy(), 1..5)) {
        let mut text = quickstart();
        for e in &edits {
            text = apply(&text, e);
        }
        match Scenario::parse(&text, "mangled.toml") {
            Ok(s) => { let _ = s.to_toml(); }
            Err(errors) => {
                let lines = text.lines().count().max(1);
                for e in &errors.0 {
                    prop_assert!(e.line >= 1 && e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
                    prop_assert!(e.column >= 1);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

/// Renaming the topic prefix (a second run on one Kafka cluster) renames the change topics and the fault targets
/// that name them; targets by broker or role without a topic stay.
#[test]
fn a_new_topic_prefix_renames_topics_and_fault_targets() {
    let scenario = Scenario::load("scenarios/isolate-follower-realtime.toml".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let renamed = scenario.with_topic_prefix("dbserver1_r2");
    assert_eq!(renamed.topic_name("obs"), "dbserver1_r2.openmrs.obs");
    assert!(renamed
        .topic_plans()
        .iter()
        .all(|plan| plan.name.starts_with("dbserver1_r2.openmrs.")));
    assert_eq!(
        renamed.faults[0].target,
        FaultTarget::FollowerOf {
            topic: "dbserver1_r2.openmrs.obs".into(),
            partition: 0
        }
    );
    let kill = Scenario::load("scenarios/connector-restart.toml".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kill.with_topic_prefix("p").faults[0].target,
        kill.faults[0].target
    );
}
