//! `[pipeline] kind = "command"` and `[pipeline.command]`: a team's own ETL as the system under test — the
//! program the harness starts (once per consumer), how the harness knows it caught up, which table of its
//! MariaDB sink it judges, and the batch query that says what that table must hold. The contract the program
//! codes against is docs/your-etl.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Millis;

/// Which ETL the run judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The harness's own ETL (manual assignment or a consumer group).
    #[default]
    BuiltIn,
    /// A team's program, started `consumers` times with the documented environment.
    Command,
}

/// How a command ETL shows how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// The offsets it commits for its consumer group (`ETL_HARNESS_GROUP_ID`).
    #[default]
    GroupOffsets,
    /// A table in its sink, `etl_progress (topic, partition, next_offset)`, written with the data: for ETLs that
    /// keep their offsets outside Kafka (Spark checkpoints, offsets stored with the data).
    SinkTable,
}

impl Progress {
    pub fn name(self) -> &'static str {
        match self {
            Progress::GroupOffsets => "group_offsets",
            Progress::SinkTable => "sink_table",
        }
    }
}

/// A built-in oracle for a team's table of a documented shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oracle {
    /// The flat encounter table (`model::flat`), as three relational tables.
    FlatEncounter,
}

/// `[pipeline.command]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEtl {
    /// The program and its arguments. A program with a `/` in its name is relative to the scenario file's
    /// directory, which is also its working directory.
    pub run: Vec<String>,
    #[serde(default)]
    pub progress: Progress,
    /// The table the ETL builds in its sink database (`ETL_HARNESS_SINK_DATABASE`).
    pub table: String,
    /// The batch query over the source's final state (an OpenMRS schema in a scratch database) whose rows the
    /// table must hold, as a multiset, column by column (the query's column names). Exclusive with `oracle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_sql: Option<String>,
    /// A built-in oracle instead of `oracle_sql`: `"flat_encounter"` judges `table`, `<table>_obs` and
    /// `<table>_orders` against the flat encounter table the built-in ETL is judged by (docs/your-etl.md has
    /// the shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle: Option<Oracle>,
    /// Floating-point values are compared rounded to this many significant digits.
    #[serde(default = "default_float_digits")]
    pub float_digits: u32,
    /// How long a `stop` (SIGTERM), and the end of the run, wait before SIGKILL.
    #[serde(default = "default_stop_grace")]
    pub stop_grace: Millis,
    /// More environment for the program (the harness's own `ETL_HARNESS_*` variables win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The scenario file's directory (set when the file is loaded; the current directory otherwise).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_float_digits() -> u32 {
    12
}

fn default_stop_grace() -> Millis {
    Millis(5_000)
}

/// What is wrong with `[pipeline]` for its kind, key by key (`command.run` names `[pipeline.command]`'s keys).
pub(super) fn command_problems(s: &super::Scenario) -> Vec<(&'static str, String)> {
    let p = &s.pipeline;
    let mut out = Vec::new();
    match (p.kind, &p.command) {
        (Kind::BuiltIn, None) => return out,
        (Kind::BuiltIn, Some(_)) => out.push((
            "command",
            "[pipeline.command] describes a team's ETL; set [pipeline] kind = \"command\"".into(),
        )),
        (Kind::Command, None) => out.push((
            "kind",
            "kind = \"command\" needs [pipeline.command] with run, table and oracle_sql or oracle (docs/your-etl.md)"
                .into(),
        )),
        (Kind::Command, Some(c)) => {
            if c.run.first().is_none_or(|p| p.trim().is_empty()) {
                out.push((
                    "command",
                    "run: expected the program and its arguments, e.g. run = [\"./etl.sh\"]".into(),
                ));
            }
            if !valid_identifier(&c.table) {
                out.push(("command", format!("table: expected a table name of letters, digits and _, found \"{}\"", c.table)));
            }
            match (&c.oracle_sql, c.oracle) {
                (Some(sql), None) if sql.trim().is_empty() => out.push((
                    "command",
                    "oracle_sql: expected the batch query the table must equal".into(),
                )),
                (Some(_), Some(_)) => out.push((
                    "command",
                    "oracle_sql and oracle: give one — the batch query the table must equal, or a built-in oracle".into(),
                )),
                (None, None) => out.push((
                    "command",
                    "expected oracle_sql (the batch query the table must equal) or oracle = \"flat_encounter\" (docs/your-etl.md)".into(),
                )),
                (None, Some(Oracle::FlatEncounter)) if c.table.len() > 57 => out.push((
                    "command",
                    format!("table: oracle = \"flat_encounter\" also reads {}_orders, longer than MariaDB's 64 characters; use a shorter name", c.table),
                )),
                _ => {}
            }
            if !(1..=17).contains(&c.float_digits) {
                out.push((
                    "command",
                    format!(
                        "float_digits: expected 1 to 17 significant digits, found {}",
                        c.float_digits
                    ),
                ));
            }
            if s.topology.clock == super::ClockMode::Virtual {
                out.push(("kind", "a command ETL runs in real time; set [topology] clock = \"real\"".into()));
            }
            let defaults = super::Pipeline::default();
            let mut built_in_only = vec![
                ("assignment", p.assignment != defaults.assignment),
                ("sink", p.sink != defaults.sink),
            ];
            built_in_only.extend(super::pipeline::group_keys_set(p));
            for (key, set) in built_in_only {
                if set {
                    out.push((key, format!("{key} configures the built-in ETL; a command ETL chooses its own (its sink is the harness's MariaDB, docs/your-etl.md)")));
                }
            }
        }
    }
    out
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    const BASE: &str =
        "name = \"c\"\n[topology]\nclock = \"real\"\n[workload]\noperations = 300\nrate = 100\n";

    fn errors(extra: &str) -> String {
        crate::scenario::errors_of(&format!("{BASE}{extra}"), "c.toml")
    }

    #[test]
    fn a_command_etl_scenario_parses_with_its_defaults() {
        let text = "[pipeline]\nkind = \"command\"\nconsumers = 2\n[pipeline.command]\nrun = [\"./etl.sh\", \"--fast\"]\ntable = \"flat_encounter\"\noracle_sql = \"SELECT 1 AS one\"\n";
        let s = Scenario::parse(&format!("{BASE}{text}"), "c.toml").expect("valid");
        let c = s.pipeline.command.expect("command");
        assert_eq!(c.run, ["./etl.sh", "--fast"]);
        assert_eq!(c.progress, super::Progress::GroupOffsets);
        assert_eq!(c.float_digits, 12);
        assert_eq!(c.stop_grace.0, 5_000);
    }

    #[test]
    fn command_settings_are_refused_with_their_place() {
        let e = errors("[pipeline]\nkind = \"command\"\n");
        assert!(
            e.contains("c.toml:8:") && e.contains("pipeline.kind: kind = \"command\" needs"),
            "{e}"
        );
        let e =
            errors("[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\noracle_sql = \"SELECT 1\"\n");
        assert!(e.contains("set [pipeline] kind = \"command\""), "{e}");
        let e = errors("[pipeline]\nkind = \"command\"\ncommit = \"after_write\"\n[pipeline.command]\nrun = []\ntable = \"a-b\"\noracle_sql = \" \"\n");
        assert!(
            e.contains("pipeline.commit: commit configures the built-in ETL"),
            "{e}"
        );
        assert!(e.contains("run: expected the program"), "{e}");
        assert!(e.contains("table: expected a table name"), "{e}");
        assert!(e.contains("oracle_sql: expected the batch query"), "{e}");
        let e = errors("[pipeline]\nkind = \"command\"\n[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\noracle_sql = \"SELECT 1\"\nfloat_digits = 0\nmystery = 1\n");
        assert!(e.contains("mystery"), "{e}");
        let e = errors(
            "[pipeline]\nkind = \"command\"\n[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\n",
        );
        assert!(e.contains("expected oracle_sql (the batch query"), "{e}");
        let e = errors("[pipeline]\nkind = \"command\"\n[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\noracle_sql = \"SELECT 1\"\noracle = \"flat_encounter\"\n");
        assert!(e.contains("oracle_sql and oracle: give one"), "{e}");
        let e = errors("[pipeline]\nkind = \"command\"\n[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\noracle = \"flat_obs\"\n");
        assert!(
            e.contains("flat_obs") && e.contains("flat_encounter"),
            "{e}"
        );
    }

    #[test]
    fn a_command_etl_takes_only_its_single_processs_commit_event() {
        let etl = |consumers: u32, progress: &str, after: &str| {
            format!("[pipeline]\nkind = \"command\"\nconsumers = {consumers}\n[pipeline.command]\nrun = [\"x\"]\ntable = \"t\"\noracle_sql = \"SELECT 1\"\nprogress = \"{progress}\"\n[[faults]]\nat = \"1s\"\nafter = \"{after}\"\naction = \"kill\"\ntarget = \"consumer 1\"\n")
        };
        let ok = format!("{BASE}{}", etl(1, "group_offsets", "consumer 1 commits"));
        let s = Scenario::parse(&ok, "c.toml").expect("one process, its commits");
        assert!(s.faults[0].after.is_some());
        let e = errors(&etl(1, "group_offsets", "consumer 1 writes"));
        assert!(e.contains("commits, not its writes"), "{e}");
        let e = errors(&etl(1, "sink_table", "consumer 1 commits"));
        assert!(e.contains("needs progress = \"group_offsets\""), "{e}");
        let e = errors(&etl(2, "group_offsets", "consumer 1 commits"));
        assert!(e.contains("needs consumers = 1"), "{e}");
    }

    #[test]
    fn the_built_in_oracle_stands_in_for_oracle_sql() {
        let text = "[pipeline]\nkind = \"command\"\n[pipeline.command]\nrun = [\"./etl.sh\"]\ntable = \"flat\"\noracle = \"flat_encounter\"\n";
        let s = Scenario::parse(&format!("{BASE}{text}"), "c.toml").expect("valid");
        let c = s.pipeline.command.expect("command");
        assert_eq!(c.oracle, Some(super::Oracle::FlatEncounter));
        assert_eq!(c.oracle_sql, None);
    }
}
