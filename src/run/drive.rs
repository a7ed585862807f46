//! The one drive: every run on every backend goes through [`drive`].

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::foreign::ForeignSink;
use super::host::Host;
use super::{configure, judge, pace, quiesce, RunError, RunOptions, RunOutcome};
use crate::check::{FinalStates, ForeignFinal, Liveness};
use crate::history::Recorder;
use crate::live::{LiveLink, Ready, StreamState};
use crate::model::flat::{self, FlatTable};
use crate::nemesis::Nemesis;
use crate::pipeline::sink::{MemorySink, MySqlSink, DEFAULT_SINK_SCHEMA};
use crate::pipeline::Pipeline;
use crate::scenario::{PipelineKind, Scenario, Sink as SinkKind};
use crate::source::Source;
use crate::topology::capture::Capture;
use crate::topology::Topology;
use crate::workload::{Generator, Phase};

/// Runs `scenario` on `topology` (started, and fitting it) and judges it: prepare, baseline, capture, pipeline,
/// the stream with the nemesis, restore, quiesce, check.
pub(crate) async fn drive<T: Topology>(
    topology: &mut T,
    scenario: &Scenario,
    options: &RunOptions,
    wall: Instant,
    live: Option<LiveLink>,
) -> Result<RunOutcome, RunError> {
    // The scenario as it runs here: a reused topology renames topics, and fault targets follow.
    let scenario = &topology.prepare(scenario).await?;
    let phase = |name: &str| tracing::info!(scenario = %scenario.name, elapsed = ?wall.elapsed(), "run: {name}");
    phase("topology prepared");
    let recorder = Recorder::new(scenario.seed);
    let mut nemesis = Nemesis::new(scenario, T::supports, recorder.clone())?;
    let clock = topology.clock();
    // A live run: its faults join the nemesis; its holder hears when the stream starts and ends.
    let mut live = live.map(|link| {
        nemesis.take_live(link.faults);
        (Some(link.ready), link.stream)
    });
    if live.is_some() && clock.is_virtual() {
        return Err(RunError::LiveNeedsRealClock);
    }
    let endpoints = topology.endpoints().await;

    let t: &T = topology;
    let mut capture = t.capture(scenario, &recorder).await?;
    let mut generator = Generator::new(&scenario.workload_spec(), scenario.seed).peekable();
    // The population that exists before capture starts: the snapshot will read it.
    while let Some(op) = generator.next_if(|op| op.phase == Phase::Baseline) {
        capture.load(&op).await?;
    }
    phase("baseline loaded");
    capture.start(scenario, &recorder).await?;
    phase("capture started");

    let mut config = configure::pipeline(scenario, endpoints.bootstrap_servers.clone());
    // A team's ETL writes its own sink database on a MariaDB server (the backend's, or one started for it).
    let foreign = match scenario.pipeline.kind {
        PipelineKind::Command => {
            let sink = ForeignSink::open(scenario, endpoints.database_url.as_deref()).await?;
            config.command =
                configure::command(scenario, &config, sink.server_url(), sink.log_dir());
            Some(sink)
        }
        PipelineKind::BuiltIn => None,
    };
    let sink_kind = if foreign.is_some() {
        SinkKind::Memory
    } else {
        scenario.pipeline.sink
    };
    let (mut pipeline, sink) = match sink_kind {
        SinkKind::Memory => {
            let sink = Arc::new(MemorySink::new());
            let pipeline =
                Pipeline::start(config, sink.clone(), recorder.clone(), clock.clone()).await?;
            (pipeline, RunSink::Memory(sink))
        }
        SinkKind::Mysql => {
            let url = endpoints.database_url.as_deref().ok_or_else(|| {
                RunError::LocalRun(format!(
                    "[pipeline] sink = \"mysql\" needs a database server, and the {} backend has none",
                    scenario.topology.backend.name()
                ))
            })?;
            let sink = Arc::new(
                MySqlSink::open(url, DEFAULT_SINK_SCHEMA)
                    .await
                    .map_err(|e| RunError::LocalRun(format!("opening the MySQL sink: {e}")))?,
            );
            let pipeline =
                Pipeline::start(config, sink.clone(), recorder.clone(), clock.clone()).await?;
            (pipeline, RunSink::Mysql(sink))
        }
    };
    capture.ready(scenario, &recorder).await?;
    phase("capture ready");
    // A consumer group forms before the stream starts, as an ETL runs before the traffic it serves.
    pipeline
        .group_formed(scenario.pipeline.quiesce_timeout.as_duration())
        .await?;
    if let Some(ready) = live.as_mut().and_then(|(ready, _)| ready.take()) {
        // The holder may have gone: the run goes on and ends as any other.
        let _ = ready.send(Ready {
            endpoints: endpoints.clone(),
            scenario: scenario.clone(),
        });
    }

    // The nemesis and the driver share the consumers (each holds the lock only while acting).
    let pipeline = Mutex::new(pipeline);
    let host = Host {
        topology: t,
        capture: &capture,
        pipeline: &pipeline,
        clock: &clock,
        stream_start_ms: clock.now_ms(),
    };
    let bar = progress_bar(options.progress, scenario.workload.operation_count());
    let streamed = if clock.is_virtual() {
        pace::stream_virtual(
            generator,
            &host,
            &mut nemesis,
            &bar,
            scenario.topology.deterministic,
        )
        .await
    } else {
        let started = tokio::time::Instant::now();
        let (stream_done, stream_watch) = tokio::sync::watch::channel(false);
        let stream = async {
            let streamed = stream_real(generator, capture.source(), started, &bar).await;
            stream_done.send_replace(true);
            if let Some((_, state)) = &live {
                state.send_replace(match &streamed {
                    Ok(()) => StreamState::Done,
                    Err(e) => StreamState::Failed(e.to_string()),
                });
            }
            streamed
        };
        // A live run's holder may wait for every commit to be in Kafka: watched once the stream is done, for as
        // long as the holder's faults go on (a connector it killed delays it; its end ends the watch).
        let in_kafka = async {
            let Some((_, state)) = &live else {
                return std::future::pending().await;
            };
            let mut seen = state.subscribe();
            if seen.wait_for(|s| *s != StreamState::Running).await.is_ok()
                && *seen.borrow() == StreamState::Done
            {
                loop {
                    let delivery = capture.delivery(&recorder).await;
                    if delivery.in_kafka {
                        state.send_replace(match delivery.failed {
                            Some(why) => StreamState::Failed(format!(
                                "the capture failed and stopped: {why}"
                            )),
                            None => StreamState::InKafka,
                        });
                        break;
                    }
                    tokio::time::sleep(capture.poll_interval()).await;
                }
            }
            std::future::pending().await
        };
        let faults = async {
            tokio::select! {
                () = nemesis.run(started, &host, stream_watch) => {}
                () = in_kafka => {}
            }
        };
        let (streamed, ()) = tokio::join!(stream, faults);
        streamed
    };
    bar.finish_and_clear();
    if let Err(e) = streamed {
        pipeline.into_inner().shutdown().await;
        capture.finish(&[], &recorder).await;
        topology.cluster_events().await;
        return Err(e);
    }
    phase("stream and faults done");
    nemesis.restore(&host).await;

    let (liveness, ends) = quiesce(scenario, &capture, &pipeline, &recorder, &clock).await;
    phase("quiesced");
    pipeline.into_inner().shutdown().await;
    let sink_table = sink.flat_table().await;
    let images = capture.final_images().await;
    let acknowledged = capture.finish(&ends, &recorder).await;
    let cluster_events = topology.cluster_events().await;
    let log_memory = topology.log_memory();
    phase("capture and cluster-event feed stopped");

    let images = images?;
    let finals = match &foreign {
        Some(judge) => FinalStates {
            foreign: Some(ForeignFinal {
                diff: judge.judge(&images).await?,
                progress_complete: liveness == Liveness::Quiesced,
            }),
            ..FinalStates::default()
        },
        None => FinalStates {
            sink: sink_table?,
            oracle: flat::build(&images),
            foreign: None,
        },
    };
    let mut history = recorder.finish(cluster_events, ends);
    if let Some(produced) = acknowledged {
        history.produced = produced;
    }
    // Judging indexes the whole history: the row images the run no longer needs (the sink's, the source's final
    // ones) go first, so the peak is not their sum.
    drop((images, sink, foreign));
    Ok(judge(
        scenario, options, wall, history, finals, &liveness, log_memory,
    ))
}

/// Real clock: commits each operation at its time (the generator's commit times, `rate` per second).
async fn stream_real(
    generator: impl Iterator<Item = crate::workload::Operation>,
    source: &impl Source,
    started: tokio::time::Instant,
    bar: &indicatif::ProgressBar,
) -> Result<(), RunError> {
    let mut first_at: Option<i64> = None;
    for op in generator {
        let t0 = *first_at.get_or_insert(op.at_ms);
        let due = started + Duration::from_millis((op.at_ms - t0).max(0) as u64);
        tokio::time::sleep_until(due).await;
        source.commit(&op).await?;
        bar.inc(1);
    }
    Ok(())
}

/// The sink the scenario asked for: in memory, or the MySQL sink in the database server's `etl_sink` schema.
pub(crate) enum RunSink {
    Memory(Arc<MemorySink>),
    Mysql(Arc<MySqlSink>),
}

impl RunSink {
    /// The flat encounter table as the sink holds it (read back from the database for the MySQL sink).
    async fn flat_table(&self) -> Result<FlatTable, RunError> {
        match self {
            RunSink::Memory(s) => Ok(s.flat_table()),
            RunSink::Mysql(s) => s
                .flat_table()
                .await
                .map_err(|e| RunError::LocalRun(format!("reading the MySQL sink back: {e}"))),
        }
    }
}

fn progress_bar(wanted: bool, len: u64) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} operations ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
