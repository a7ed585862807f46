//! `etl-harness`: the command line. Exit codes: 0 pass, 1 expectations not met, 2 usage, configuration or
//! infrastructure error.

use std::io::IsTerminal;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use clap::{Parser, Subcommand, ValueEnum};
use openmrs_etl_harness::cli::test::TestArgs;
use openmrs_etl_harness::cli::up::{self, UpArgs};
use openmrs_etl_harness::fuzz_faults;
use openmrs_etl_harness::run::RunOptions;
use openmrs_etl_harness::scenario::{Backend, Scenario};
use openmrs_etl_harness::workload::{sql, Generator, WorkloadSpec};

/// mimalloc: glibc's malloc took a fifth of a large run's CPU (docs/benchmarks.md, issue 23).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "etl-harness",
    version,
    about = "Test and simulation bench for the OpenMRS streaming ETL (MySQL -> Debezium -> Kafka -> ETL)",
    after_help = "Exit codes: 0 pass, 1 expectations not met, 2 usage/configuration/infrastructure error.\n\
                  Logging: RUST_LOG=info (or debug, trace, openmrs_etl_harness=debug) on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ImagesAction {
    /// Build the images whose inputs changed (each tag is a hash of its inputs).
    Build,
    /// The images this machine's inputs name, and whether each is built.
    List,
    /// The pinned Debezium plugin's directory (from Maven), as the containers backend and docker/ mount it.
    Plugins,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a scenario file, then print it resolved with every default.
    #[command(
        after_help = "Examples:\n  etl-harness validate scenarios/quickstart.toml\n  \
                            etl-harness validate my-scenario.toml > resolved.toml"
    )]
    Validate {
        /// The scenario file (TOML); see scenarios/README.md.
        file: PathBuf,
    },
    /// Write a seeded OpenMRS workload as SQL (loads after fixtures/openmrs-schema.sql) or JSON lines.
    #[command(
        after_help = "Examples:\n  etl-harness generate --seed 42 --patients 100 --operations 5000 --out workload.sql\n  \
                            etl-harness generate --scenario scenarios/quickstart.toml --format jsonl | head\n  \
                            mariadb openmrs < fixtures/openmrs-schema.sql && mariadb openmrs < workload.sql"
    )]
    Generate {
        /// Take seed and workload settings from this scenario (flags below override them).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Seed of every random choice (default: the scenario's, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Patients registered before the stream.
        #[arg(long)]
        patients: Option<u64>,
        /// Operations in the stream.
        #[arg(long)]
        operations: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Sql)]
        format: Format,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a scenario end to end (workload → source → capture → Kafka → ETL → sink), check it, print the report.
    #[command(
        after_help = "Examples:\n  etl-harness run scenarios/quickstart.toml\n  \
                            etl-harness run scenarios/quickstart.toml --seed 7 --report out.json\n  \
                            etl-harness run scenarios/broker-kill.toml --backend local\n\n\
                            Exit codes: 0 every expectation held, 1 an expectation failed (the seed and the command\n\
                            that reproduces it are printed), 2 the scenario or the topology could not be run."
    )]
    Run {
        /// The scenario file (TOML); see scenarios/README.md.
        file: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run on this backend instead of the file's `[topology] backend`; it must be one the scenario lists in
        /// `backends` (embedded, local, containers, external).
        #[arg(long)]
        backend: Option<String>,
        /// Also write the whole report as JSON here (and, when the run fails, the resolved scenario beside it).
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        no_progress: bool,
        /// With the containers backend: run this image instead of the one built here, as `[topology.images]`
        /// says (`mariadb=docker.io/library/mariadb:10.11`, `jvm=docker.io/apache/kafka:3.9.1`,
        /// `jvm_libs=/path/in/image`). Repeatable.
        #[arg(long = "image", value_name = "ROLE=IMAGE")]
        images: Vec<String>,
    },
    /// Run one scenario on several backends (same seed and workload) and compare their verdicts.
    #[command(
        after_help = "Examples:\n  etl-harness diff scenarios/quickstart.toml --backends embedded,local\n\n\
                            Exit codes: 0 every backend gave the same verdict for every invariant, 1 they disagree\n\
                            (the table marks where), 2 a backend could not run the scenario."
    )]
    Diff {
        /// The scenario file (TOML); every backend named must be in its `backends` list.
        file: PathBuf,
        /// Backends to run it on, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "embedded,local")]
        backends: Vec<String>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Start an embedded Kafka cluster (or, with --backend local, the real MariaDB, Kafka and Debezium) on
    /// 127.0.0.1 and serve until Ctrl-C (point kcat or your own code at it).
    #[command(after_help = "Examples:\n  etl-harness up\n  \
                            etl-harness up --brokers 3 --partitions 6 --topic dbserver1.openmrs.obs\n  \
                            etl-harness up --port-base 19092 --log-default retention.ms=60000\n  \
                            etl-harness up --backend local --brokers 3 --scenario scenarios/broker-kill.toml\n  \
                            kcat -b <bootstrap servers printed by up> -L")]
    Up(UpArgs),
    /// Run a suite of scenarios (files or directories; default scenarios/) as CI would, optionally with JUnit XML.
    #[command(after_help = "Examples:\n  etl-harness test\n  \
                            etl-harness test scenarios/ --junit target/junit.xml\n  \
                            etl-harness test scenarios/broker-kill.toml scenarios/retention.toml --jobs 1\n  \
                            etl-harness test --filter kill --backends\n\n\
                            Exit codes: 0 every scenario passed, 1 an expectation failed or backends disagreed,\n\
                            2 a scenario could not be loaded or run.")]
    Test(TestArgs),
    /// The container images the containers backend runs, built on this machine (no registry needed): a Debian
    /// base from the machine's apt sources, MariaDB, and Java with the pinned Kafka, Connect and Debezium jars.
    #[command(
        after_help = "Examples:\n  etl-harness images build\n  etl-harness images list\n  \
                            DEBEZIUM_PLUGINS=$(etl-harness images plugins) docker compose -f docker/docker-compose.yml up -d\n\n\
                            The daemon is the one testcontainers finds (DOCKER_HOST, then Docker's sockets); it must\n\
                            speak Docker API 1.53 (podman's service does: see docs/backends.md)."
    )]
    Images {
        #[command(subcommand)]
        action: ImagesAction,
    },
    /// Remove the containers a killed harness left behind (those of a harness still running are kept).
    Down,
    /// Property campaign over fault schedules: the first that loses, reorders or diverges, shrunk, as a scenario.
    #[command(
        name = "fuzz-faults",
        after_help = "Each case is the base scenario (default: a small safe one: acks=all, RF 3, min ISR 2,
                      clean election, idempotence) with a drawn fault schedule and case seed; the property is
                      lost 0, reordered 0, final state equal, liveness. Stops at the first failure, shrinks it
                      (fewer, earlier, simpler faults) and writes it under --out.

                      Examples:
  etl-harness fuzz-faults --cases 200
                        etl-harness fuzz-faults --cases 50 --seed 7 --scenario my-base.toml --out failures/

                      Exit codes: 0 every case held, 1 a failure was found (its file and the command that
                      reproduces it are printed), 2 the campaign could not be run."
    )]
    FuzzFaults {
        /// Cases to run (each is a whole scenario run, about a second with the default base).
        #[arg(long, default_value_t = 100)]
        cases: u32,
        /// Campaign seed: the same seed draws the same schedules (default: drawn and printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Base scenario (its faults and `[expect]` are replaced by each case's); default: the built-in safe one.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Where the shrunk failing scenario is written.
        #[arg(long, default_value = "target/fault-failures")]
        out: PathBuf,
        /// Which faults to draw.
        #[arg(long, value_enum, default_value_t = Mix::Any)]
        mix: Mix,
        /// Whole runs the shrinker may spend on a failure.
        #[arg(long, default_value_t = 48)]
        max_shrink_runs: u32,
        /// Run every case on each of these backends (comma-separated) and fail a case whose verdicts differ;
        /// with more than one the default base is a 10 s real-clock one listing them.
        #[arg(long, value_delimiter = ',', default_value = "embedded")]
        backends: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mix {
    /// Every fault kind on brokers (by id and role), the connector and the consumers.
    Any,
    /// Only broker outages that take leaders away.
    LeaderKills,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One transaction per operation, for MySQL/MariaDB.
    Sql,
    /// One JSON object per operation, with full before/after row images.
    Jsonl,
}

/// Failures of the CLI, each mapped to its exit code.
enum Failure {
    /// Configuration or infrastructure: exit 2.
    Setup(String),
    /// The run finished and an expectation did not hold: exit 1 (the report has been printed).
    Expectation,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                // rskafka and librdkafka log what the faults cause (the history has it); RUST_LOG shows it.
                .unwrap_or_else(|_| {
                    EnvFilter::new("warn,rskafka=error,librdkafka=off,rdkafka=off")
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { file } => validate(file),
        Command::Generate {
            scenario,
            seed,
            patients,
            operations,
            format,
            out,
        } => generate(scenario, seed, patients, operations, format, out),
        Command::Run {
            file,
            seed,
            backend,
            report,
            no_progress,
            images,
        } => run(file, seed, backend, &images, report, !no_progress),
        Command::Diff {
            file,
            backends,
            seed,
        } => diff(file, backends, seed),
        Command::FuzzFaults {
            cases,
            seed,
            scenario,
            out,
            mix,
            max_shrink_runs,
            backends,
        } => fuzz_faults(cases, seed, scenario, out, mix, max_shrink_runs, backends),
        Command::Test(args) => {
            return ExitCode::from(openmrs_etl_harness::cli::test::run(args));
        }
        Command::Images { action } => match action {
            ImagesAction::Build => openmrs_etl_harness::cli::containers::build_images(),
            ImagesAction::List => openmrs_etl_harness::cli::containers::list_images(),
            ImagesAction::Plugins => openmrs_etl_harness::cli::containers::plugin_dir(),
        }
        .map_err(|e| Failure::Setup(format!("etl-harness images: {e}"))),
        Command::Down => openmrs_etl_harness::cli::containers::down()
            .map_err(|e| Failure::Setup(format!("etl-harness down: {e}"))),
        Command::Up(args) => up::run(args)
            .map_err(|e| Failure::Setup(format!("etl-harness up: {}", error_chain(&e)))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Expectation) => ExitCode::from(1),
    }
}

/// An error and its causes, each said once: a cause whose message the one before it already carries (an error that
/// formats its source into its own message) is left out.
fn error_chain(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if said.last().is_some_and(|last| last.contains(&message)) {
            continue;
        }
        said.push(message);
    }
    said.join(": ")
}

/// `--backends embedded,local` as backends; an unknown name is an error naming the known ones.
fn parse_backends(names: &[String]) -> Result<Vec<Backend>, Failure> {
    names
        .iter()
        .map(|name| match name.trim() {
            "embedded" => Ok(Backend::Embedded),
            "local" => Ok(Backend::Local),
            "containers" => Ok(Backend::Containers),
            "external" => Ok(Backend::External),
            other => Err(Failure::Setup(format!(
                "--backends: unknown backend `{other}` (embedded, local, containers, external)"
            ))),
        })
        .collect()
}

fn diff(file: PathBuf, backends: Vec<String>, seed: Option<u64>) -> Result<(), Failure> {
    let mut scenario = load(&file)?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let backends = parse_backends(&backends)?;
    let reproduce = format!(
        "etl-harness diff {} --backends {} --seed {}",
        file.display(),
        backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(","),
        scenario.seed
    );
    let options = RunOptions {
        scenario_path: file.display().to_string(),
        progress: false,
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Setup(format!("cannot start the async runtime: {e}")))?;
    let diff = runtime
        .block_on(openmrs_etl_harness::run::diff::diff(
            &scenario, &options, &backends,
        ))
        .map_err(|e| {
            Failure::Setup(format!(
                "{}: diff failed: {e}\nseed {}; reproduce with: {reproduce}",
                file.display(),
                scenario.seed
            ))
        })?;
    println!("{} (seed {})", scenario.name, scenario.seed);
    print!("{}", diff.table());
    if diff.agree() {
        println!("the backends agree on every verdict");
        Ok(())
    } else {
        eprintln!(
            "the backends disagree on: {}; seed {}; reproduce with: {reproduce}",
            diff.disagreements().join(", "),
            scenario.seed
        );
        Err(Failure::Expectation)
    }
}

/// Applies `--image ROLE=IMAGE` flags to `[topology.images]`; returns them as the reproduce command repeats them.
fn choose_images(
    scenario: &mut Scenario,
    flags: &[String],
    backend: Option<&str>,
) -> Result<String, Failure> {
    if flags.is_empty() {
        return Ok(String::new());
    }
    if backend != Some("containers") {
        return Err(Failure::Setup(
            "--image: images are for the containers backend; add --backend containers".into(),
        ));
    }
    let mut repeated = String::new();
    for flag in flags {
        let (role, value) = flag.split_once('=').ok_or_else(|| {
            Failure::Setup(format!(
                "--image {flag}: expected ROLE=IMAGE (roles: mariadb, jvm, jvm_libs)"
            ))
        })?;
        let slot = match role {
            "mariadb" => &mut scenario.topology.images.mariadb,
            "jvm" => &mut scenario.topology.images.jvm,
            "jvm_libs" => &mut scenario.topology.images.jvm_libs,
            _ => {
                return Err(Failure::Setup(format!(
                    "--image {flag}: unknown role `{role}` (mariadb, jvm, jvm_libs)"
                )))
            }
        };
        *slot = Some(value.to_owned());
        repeated.push_str(&format!(" --image {role}={value}"));
    }
    openmrs_etl_harness::topology::containers::registry::Chosen::resolve(&scenario.topology.images)
        .map_err(|e| Failure::Setup(format!("--image: {e}")))?;
    Ok(repeated)
}

fn run(
    file: PathBuf,
    seed: Option<u64>,
    backend: Option<String>,
    images: &[String],
    report_path: Option<PathBuf>,
    progress: bool,
) -> Result<(), Failure> {
    let mut scenario = load(&file)?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let image_flags = choose_images(&mut scenario, images, backend.as_deref())?;
    let mut backend_flag = String::new();
    if let Some(name) = backend {
        let chosen = parse_backends(std::slice::from_ref(&name))
            .map_err(|_| {
                Failure::Setup(format!(
                    "--backend: unknown backend `{name}` (embedded, local, containers, external)"
                ))
            })?
            .remove(0);
        if !scenario.backends.contains(&chosen) {
            let listed: Vec<&str> = scenario.backends.iter().map(|b| b.name()).collect();
            return Err(Failure::Setup(format!(
                "{}: --backend {name}: the scenario lists only {} in `backends`; its expectations are not claimed \
                 to hold on {name}",
                file.display(),
                listed.join(", ")
            )));
        }
        scenario.topology.backend = chosen;
        backend_flag = format!(" --backend {name}");
    }
    let reproduce = format!(
        "etl-harness run {}{backend_flag}{image_flags} --seed {}",
        file.display(),
        scenario.seed
    );
    let options = RunOptions {
        scenario_path: file.display().to_string(),
        progress,
    };
    let runtime = openmrs_etl_harness::run::runtime(&scenario)
        .map_err(|e| Failure::Setup(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime
        .block_on(openmrs_etl_harness::run::run(&scenario, &options))
        .map_err(|e| {
            Failure::Setup(format!(
                "{}: run failed: {e}\nseed {}; reproduce with: {reproduce}",
                file.display(),
                scenario.seed
            ))
        })?;
    print!("{}", outcome.report.terminal());
    if let Some(path) = &report_path {
        let json = serde_json::to_string_pretty(&outcome.report.to_json())
            .map_err(|e| Failure::Setup(format!("cannot render the JSON report: {e}")))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| Failure::Setup(format!("{}: cannot write: {e}", path.display())))?;
        if !outcome.report.passed() {
            let resolved = path.with_extension("scenario.toml");
            std::fs::write(&resolved, scenario.to_toml()).map_err(|e| {
                Failure::Setup(format!("{}: cannot write: {e}", resolved.display()))
            })?;
            eprintln!("resolved scenario written to {}", resolved.display());
        }
    }
    if outcome.report.passed() {
        Ok(())
    } else {
        eprintln!(
            "expectations failed; seed {}; reproduce with: {reproduce}",
            scenario.seed
        );
        Err(Failure::Expectation)
    }
}

fn fuzz_faults(
    cases: u32,
    seed: Option<u64>,
    scenario: Option<PathBuf>,
    out: PathBuf,
    mix: Mix,
    max_shrink_runs: u32,
    backends: Vec<String>,
) -> Result<(), Failure> {
    let backends = parse_backends(&backends)?;
    let differential = backends.len() > 1;
    let (built_in, built_in_name) = if differential {
        (
            fuzz_faults::DIFFERENTIAL_BASE,
            "the built-in differential base",
        )
    } else {
        (fuzz_faults::SAFE_BASE, "the built-in safe base")
    };
    let (base, base_name) = match &scenario {
        Some(file) => (load(file)?, file.display().to_string()),
        None => (
            fuzz_faults::base_scenario(built_in, built_in_name)
                .map_err(|e| Failure::Setup(format!("the built-in base scenario: {e}")))?,
            built_in_name.to_string(),
        ),
    };
    // Like VOPR: a campaign without --seed draws one, and always prints it.
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    let mut config = fuzz_faults::CampaignConfig::new(cases, seed, out);
    config.mix = match mix {
        Mix::Any => fuzz_faults::FaultMix::Any,
        Mix::LeaderKills => fuzz_faults::FaultMix::LeaderKills,
    };
    config.max_shrink_runs = max_shrink_runs;
    config.backends = backends;
    eprintln!(
        "fuzz-faults: campaign seed {seed}, up to {cases} cases over {base_name} (the same --seed draws the same schedules)"
    );
    let mut on_progress = |p: &fuzz_faults::Progress| match p {
        fuzz_faults::Progress::Case {
            number,
            seed,
            faults,
            held,
            unapplied,
            elapsed,
        } => {
            let per_second = f64::from(*number) / elapsed.as_secs_f64().max(1e-9);
            // A differential case takes tens of seconds: its rate reads better per minute.
            let rate = if differential {
                format!(
                    "{:.1} cases/min, {:.0} s in",
                    60.0 * per_second,
                    elapsed.as_secs_f64()
                )
            } else {
                format!("{per_second:.2} cases/s")
            };
            let verdict = if !unapplied.is_empty() {
                format!(
                    "INCOMPLETE, not judged: {} fault(s) not applied ({})",
                    unapplied.len(),
                    unapplied.join("; ")
                )
            } else if *held {
                "held".to_string()
            } else {
                "FAILED".to_string()
            };
            eprintln!("case {number}/{cases}: seed {seed}, {faults} faults, {verdict} ({rate})")
        }
        fuzz_faults::Progress::Shrink {
            attempt,
            faults,
            still_fails,
        } => eprintln!(
            "shrink {attempt}/{max_shrink_runs}: {faults} faults, {}",
            if *still_fails { "still fails" } else { "holds" }
        ),
    };
    let report = fuzz_faults::search(&base, &config, &mut on_progress)
        .map_err(|e| Failure::Setup(format!("fuzz-faults (campaign seed {seed}): {e}")))?;
    let rate = format!(
        "{} cases in {:.1} s ({:.2} cases/s, {:.1} cases/min)",
        report.cases,
        report.search_time.as_secs_f64(),
        report.cases_per_second(),
        report.cases_per_minute()
    );
    if report.cases_incomplete > 0 {
        println!(
            "fuzz-faults: {} of {} cases incomplete (a backend could not apply a fault; not judged), e.g.:",
            report.cases_incomplete, report.cases
        );
        for example in &report.incomplete_examples {
            println!("  {example}");
        }
    }
    let Some(failure) = report.failure else {
        let judged = report.cases - report.cases_incomplete;
        println!("fuzz-faults: every case held ({judged} judged): {rate}; campaign seed {seed}");
        return Ok(());
    };
    println!(
        "fuzz-faults: the property failed after {rate}: {} broke",
        failure.failed.join(", ")
    );
    println!(
        "shrunk from {} to {} faults in {} runs; scenario written to {}",
        failure.original_faults,
        failure.scenario.faults.len(),
        failure.shrink_runs,
        failure.path.display()
    );
    if failure.reproduced() {
        println!("the written file failed the same way when run again");
    } else {
        println!(
            "the written file broke {} when run again (timing decides some failures; run it a few times)",
            if failure.rerun_failed.is_empty() {
                "nothing".to_string()
            } else {
                failure.rerun_failed.join(", ")
            }
        );
    }
    println!("reproduce with: {}", failure.reproduce());
    Err(Failure::Expectation)
}

fn load(file: &std::path::Path) -> Result<Scenario, Failure> {
    Scenario::load(file)
        .map_err(|e| Failure::Setup(format!("{e}\n(scenario reference: scenarios/README.md)")))
}

fn validate(file: PathBuf) -> Result<(), Failure> {
    let scenario = load(&file)?;
    print!("{}", scenario.to_toml());
    Ok(())
}

fn generate(
    scenario: Option<PathBuf>,
    seed: Option<u64>,
    patients: Option<u64>,
    operations: Option<u64>,
    format: Format,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    let (mut spec, mut chosen_seed) = (WorkloadSpec::default(), 1);
    if let Some(file) = &scenario {
        let s = load(file)?;
        spec = s.workload_spec();
        chosen_seed = s.seed;
    }
    let seed = seed.unwrap_or(chosen_seed);
    spec.patients = patients.unwrap_or(spec.patients);
    spec.operations = operations.unwrap_or(spec.operations);

    let sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::Setup(format!("{}: cannot create: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, sink);
    let mut generator = Generator::new(&spec, seed);
    let mut buf = String::with_capacity(64 * 1024);
    let mut count = 0u64;
    let write_error = |e: std::io::Error| {
        let place = out
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "standard output".into());
        Failure::Setup(format!("{place}: write failed: {e}"))
    };
    if matches!(format, Format::Sql) {
        writeln!(
            writer,
            "-- openmrs-etl-harness workload: seed {seed}, {} patients, {} operations",
            spec.patients, spec.operations
        )
        .map_err(write_error)?;
    }
    for op in generator.by_ref() {
        match format {
            Format::Sql => sql::write_operation_sql(&mut buf, &op),
            Format::Jsonl => sql::write_operation_json(&mut buf, &op),
        }
        count += 1;
        if buf.len() > 48 * 1024 {
            writer.write_all(buf.as_bytes()).map_err(write_error)?;
            buf.clear();
        }
    }
    writer.write_all(buf.as_bytes()).map_err(write_error)?;
    writer.flush().map_err(write_error)?;
    let rows: Vec<String> = generator
        .row_counts()
        .iter()
        .map(|(t, n)| format!("{t}={n}"))
        .collect();
    eprintln!(
        "generated {count} operations (seed {seed}); rows: {}",
        rows.join(" ")
    );
    Ok(())
}
