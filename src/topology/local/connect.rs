//! The Kafka Connect worker (distributed mode, one member, against every broker) and its REST API: registering a connector and waiting
//! until it and its tasks run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::error::LocalError;
use super::java::{java_command, write_properties, JavaService};
use super::process::{wait_until_ready, ServiceCommand, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

/// The Connect group id; its internal topics are `connect-configs`, `connect-offsets` and `connect-status`.
pub const CONNECT_GROUP_ID: &str = "openmrs-etl-harness-connect";

pub(crate) struct WorkerSettings<'a> {
    pub port: u16,
    pub bootstrap_servers: &'a str,
    /// Replicas of the worker's internal topics: min(3, brokers).
    pub internal_replication: u32,
    pub max_heap: &'a str,
}

/// Writes the worker's config and returns the command that starts it; starting it again reuses the config, the
/// port and (in Kafka) the worker's internal topics, so registered connectors come back.
pub(crate) fn worker_command(
    run: &RunDir,
    jvm: &JvmComponents,
    settings: &WorkerSettings<'_>,
) -> Result<ServiceCommand, LocalError> {
    let config = write_properties(
        run,
        "connect-distributed.properties",
        &worker_properties(settings, &jvm.plugin_path()),
    )?;
    let connect_libs = jvm.connect_libs();
    java_command(
        run,
        &JavaService {
            name: "connect",
            max_heap: settings.max_heap,
            classpath: &[connect_libs.as_path()],
            main_class: "org.apache.kafka.connect.cli.ConnectDistributed",
            args: vec![config.into_os_string()],
            log_levels: &[
                ("org.reflections", "ERROR"),
                ("org.apache.kafka.clients", "WARN"),
                ("org.apache.kafka.common.config.AbstractConfig", "WARN"),
            ],
        },
    )
}

/// The worker's configuration (also what docker/docker-compose.yml's worker is held to).
pub(crate) fn worker_properties(
    settings: &WorkerSettings<'_>,
    plugin_path: &std::path::Path,
) -> Vec<(&'static str, String)> {
    let replication = settings.internal_replication.to_string();
    let listener = format!("http://127.0.0.1:{}", settings.port);
    vec![
        ("bootstrap.servers", settings.bootstrap_servers.to_owned()),
        ("group.id", CONNECT_GROUP_ID.into()),
        (
            "key.converter",
            "org.apache.kafka.connect.json.JsonConverter".into(),
        ),
        (
            "value.converter",
            "org.apache.kafka.connect.json.JsonConverter".into(),
        ),
        ("key.converter.schemas.enable", "true".into()),
        ("value.converter.schemas.enable", "true".into()),
        ("config.storage.topic", "connect-configs".into()),
        ("offset.storage.topic", "connect-offsets".into()),
        ("status.storage.topic", "connect-status".into()),
        ("config.storage.replication.factor", replication.clone()),
        ("offset.storage.replication.factor", replication.clone()),
        ("status.storage.replication.factor", replication),
        ("offset.storage.partitions", "1".into()),
        ("status.storage.partitions", "1".into()),
        // Short, so a killed worker replays little and tests see committed source offsets quickly.
        ("offset.flush.interval.ms", "1000".into()),
        ("listeners", listener),
        ("rest.advertised.host.name", "127.0.0.1".into()),
        ("rest.advertised.port", settings.port.to_string()),
        ("plugin.path", plugin_path.display().to_string()),
        ("plugin.discovery", "only_scan".into()),
        ("connector.client.config.override.policy", "All".into()),
    ]
}

/// Waits until the worker on `port` lists `plugin` (a connector class) in its REST API.
pub(crate) async fn wait_for_worker(
    process: &mut ServiceProcess,
    port: u16,
    plugin: &str,
    timeout: Duration,
) -> Result<(), LocalError> {
    let rest = ConnectRest::new(port, process.log_path().to_path_buf());
    wait_until_ready(
        process,
        &format!("{plugin} in {}/connector-plugins", rest.base_url),
        timeout,
        || rest.lists_plugin(plugin),
    )
    .await
}

/// A client of one Connect worker's REST API.
#[derive(Debug, Clone)]
pub struct ConnectRest {
    base_url: String,
    http: reqwest::Client,
    worker_log: PathBuf,
}

/// What one look at a connector found: ready, or what it saw instead.
enum Look {
    Ready,
    NotYet(String),
}

/// Connector and task states from `GET /connectors/{name}/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorStatus {
    pub connector: WorkerState,
    #[serde(default)]
    pub tasks: Vec<WorkerState>,
}

impl ConnectorStatus {
    /// The connector's state if it FAILED, else the first FAILED task's.
    pub fn failed(&self) -> Option<&WorkerState> {
        std::iter::once(&self.connector)
            .chain(self.tasks.iter())
            .find(|state| state.state == "FAILED")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerState {
    pub state: String,
    #[serde(default)]
    pub trace: Option<String>,
}

impl ConnectRest {
    pub(crate) fn new(port: u16, worker_log: PathBuf) -> Self {
        let http = reqwest::Client::builder()
            // Loopback only: never send these requests through a configured proxy.
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ConnectRest {
            base_url: format!("http://127.0.0.1:{port}"),
            http,
            worker_log,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn lists_plugin(&self, class: &str) -> Result<(), String> {
        let url = format!("{}/connector-plugins", self.base_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        if body.contains(class) {
            Ok(())
        } else {
            Err(format!("plugin not listed: {body}"))
        }
    }

    /// `POST /connectors`; an existing connector with the same name is reconfigured with `PUT .../config`.
    pub async fn create_connector(
        &self,
        name: &str,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), LocalError> {
        let url = format!("{}/connectors", self.base_url);
        let body = serde_json::json!({ "name": name, "config": config });
        let response =
            self.http.post(&url).json(&body).send().await.map_err(|e| {
                self.rest_error(&format!("POST {url}"), "no answer", &e.to_string())
            })?;
        let status = response.status();
        if status.as_u16() == 409 {
            let url = format!("{}/connectors/{name}/config", self.base_url);
            let response =
                self.http.put(&url).json(config).send().await.map_err(|e| {
                    self.rest_error(&format!("PUT {url}"), "no answer", &e.to_string())
                })?;
            return self.expect_success(&format!("PUT {url}"), response).await;
        }
        self.expect_success(&format!("POST {url}"), response).await
    }

    /// `GET /connectors/{name}/status`; `None` while the worker does not know the connector yet.
    pub async fn connector_status(
        &self,
        name: &str,
    ) -> Result<Option<ConnectorStatus>, LocalError> {
        self.get_json(&format!("connectors/{name}/status")).await
    }

    /// `GET <path>` parsed as JSON; `None` on 404, an error naming the request on any other failure.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, LocalError> {
        let url = format!("{}/{path}", self.base_url);
        let request = format!("GET {url}");
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.rest_error(&request, "no answer", &e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.rest_error(&request, &status.to_string(), &e.to_string()))?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.rest_error(&request, &status.to_string(), &body));
        }
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| self.rest_error(&request, &status.to_string(), &format!("{e}: {body}")))
    }

    /// Waits until the worker's herder knows the connector (its config answers): a restarted worker answers REST
    /// before its herder has read the connectors back from the config topic, and says 404 to a resume until then
    /// (its status, read from the status topic, answers earlier: not a sign).
    pub async fn wait_until_known(&self, name: &str, timeout: Duration) -> Result<(), LocalError> {
        let path = format!("connectors/{name}/config");
        self.poll_connector(name, "known to the restarted worker", timeout, || async {
            let config: Result<Option<serde_json::Value>, LocalError> = self.get_json(&path).await;
            Ok(match config {
                Ok(Some(_)) => Look::Ready,
                Ok(None) => Look::NotYet("unknown to the worker (404)".into()),
                Err(e) => Look::NotYet(e.to_string()),
            })
        })
        .await
    }

    /// Waits until the connector and all its tasks (at least one) are RUNNING. A FAILED connector or task is an
    /// error at once, with Connect's stack trace.
    pub async fn wait_until_running(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        self.poll_connector(name, "connector and tasks RUNNING", timeout, || async {
            let Some(status) = self.connector_status(name).await? else {
                return Ok(Look::NotYet("unknown to the worker".into()));
            };
            self.not_failed(name, &status)?;
            let running = status.connector.state == "RUNNING"
                && !status.tasks.is_empty()
                && status.tasks.iter().all(|task| task.state == "RUNNING");
            if running {
                return Ok(Look::Ready);
            }
            Ok(Look::NotYet(format!(
                "connector {}, tasks [{}]",
                status.connector.state,
                status
                    .tasks
                    .iter()
                    .map(|task| task.state.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        })
        .await
    }

    /// `PUT /connectors/{name}/pause`: the connector and its tasks stop at their next poll and keep their offsets.
    pub async fn pause_connector(&self, name: &str) -> Result<(), LocalError> {
        self.lifecycle(reqwest::Method::PUT, &format!("connectors/{name}/pause"))
            .await
    }

    /// `PUT /connectors/{name}/resume`: a paused connector goes on from its committed offsets (a running one is
    /// left as it is).
    pub async fn resume_connector(&self, name: &str) -> Result<(), LocalError> {
        self.lifecycle(reqwest::Method::PUT, &format!("connectors/{name}/resume"))
            .await
    }

    /// `POST /connectors/{name}/restart?includeTasks=true`: the connector and every task restart, the tasks from
    /// their committed offsets (what was sent since the last offset commit is sent again).
    pub async fn restart_connector(&self, name: &str) -> Result<(), LocalError> {
        self.lifecycle(
            reqwest::Method::POST,
            &format!("connectors/{name}/restart?includeTasks=true&onlyFailed=false"),
        )
        .await
    }

    /// `DELETE /connectors/{name}`: the connector and its tasks stop and are removed (its committed offsets stay
    /// in the offsets topic under its name). A connector the worker does not know is not an error.
    pub async fn delete_connector(&self, name: &str) -> Result<(), LocalError> {
        let url = format!("{}/connectors/{name}", self.base_url);
        let request = format!("DELETE {url}");
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(|e| self.rest_error(&request, "no answer", &e.to_string()))?;
        if response.status().as_u16() == 404 {
            return Ok(());
        }
        self.expect_success(&request, response).await
    }

    /// `GET /connectors/{name}/offsets`: the source offsets Connect has committed for the connector (one per
    /// source partition) — the only proof of what Debezium had acknowledged, and where it resumes after a restart.
    pub async fn committed_offsets(
        &self,
        name: &str,
    ) -> Result<Vec<serde_json::Value>, LocalError> {
        let answer: Option<serde_json::Value> =
            self.get_json(&format!("connectors/{name}/offsets")).await?;
        Ok(answer
            .as_ref()
            .and_then(|a| a.get("offsets"))
            .and_then(|o| o.as_array())
            .map(|offsets| {
                offsets
                    .iter()
                    .filter_map(|o| o.get("offset").cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until Connect has committed a source offset of `name` taken after its initial snapshot (Debezium
    /// marks offsets taken during a snapshot with `snapshot`); a restart before that redoes the snapshot.
    pub async fn wait_until_past_snapshot(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        self.poll_connector(
            name,
            "a committed source offset past the initial snapshot",
            timeout,
            || async {
                let offsets = self.committed_offsets(name).await?;
                Ok(match offsets.first() {
                    None => Look::NotYet("no committed offset".into()),
                    Some(offset) if in_snapshot(offset) => Look::NotYet(offset.to_string()),
                    Some(offset) => {
                        tracing::debug!(%offset, "committed source offset past the snapshot");
                        Look::Ready
                    }
                })
            },
        )
        .await
    }

    /// A FAILED connector or task in `status` as the error, with Connect's stack trace.
    fn not_failed(&self, name: &str, status: &ConnectorStatus) -> Result<(), LocalError> {
        match status.failed() {
            Some(failed) => Err(LocalError::ConnectorFailed {
                connector: name.to_owned(),
                state: failed.state.clone(),
                trace: failed.trace.clone().unwrap_or_default(),
                log: self.worker_log.clone(),
            }),
            None => Ok(()),
        }
    }

    /// How long the worker's log is now: the mark [`ConnectRest::wait_until_streaming`] reads on from.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(&self.worker_log)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Waits until the task that a restart after `mark` (a [`ConnectRest::log_mark`]) started is streaming: the
    /// worker's log after `mark` shows Debezium connected to the binlog after the last restart plan Connect
    /// completed. RUNNING alone is not enough: Connect reports a task RUNNING as soon as its thread starts, and
    /// Debezium 3.2.0 can fail seconds later while it starts streaming (a task restarted while the previous
    /// instance of it still stops: "DebeziumOpenLineageEmitter not initialized", DBZ-9504). A FAILED task or
    /// connector is that error.
    pub async fn wait_until_streaming(
        &self,
        name: &str,
        mark: u64,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        self.streaming_since(name, mark, timeout, true).await
    }

    /// [`ConnectRest::wait_until_streaming`] for a worker just restarted: its REST status first shows what the
    /// status topic last held — the old worker's FAILED, with its trace — until the new worker's task writes its
    /// own, so a FAILED state is not an error here; only the log after `mark` decides (or the timeout).
    pub async fn wait_until_streaming_after_worker_restart(
        &self,
        name: &str,
        mark: u64,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        self.streaming_since(name, mark, timeout, false).await
    }

    async fn streaming_since(
        &self,
        name: &str,
        mark: u64,
        timeout: Duration,
        fail_fast: bool,
    ) -> Result<(), LocalError> {
        self.poll_connector(
            name,
            "the restarted task streaming the binlog",
            timeout,
            || async {
                if fail_fast {
                    if let Some(status) = self.connector_status(name).await? {
                        self.not_failed(name, &status)?;
                    }
                }
                let log = read_from(&self.worker_log, mark);
                Ok(if streaming_since_restart(&log) {
                    Look::Ready
                } else {
                    Look::NotYet(
                        "no \"Connected to binlog\" in the worker log since the restart".into(),
                    )
                })
            },
        )
        .await
    }

    /// Looks at connector `name` every 250 ms until `look` finds it ready (`Ok`), `look` fails (that error), or
    /// `timeout` passes (`NotReady` for `condition`, with what the last look saw).
    async fn poll_connector<F, Fut>(
        &self,
        name: &str,
        condition: &str,
        timeout: Duration,
        mut look: F,
    ) -> Result<(), LocalError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Look, LocalError>>,
    {
        let started = Instant::now();
        loop {
            let last_attempt = match look().await? {
                Look::Ready => return Ok(()),
                Look::NotYet(seen) => seen,
            };
            if started.elapsed() >= timeout {
                return Err(LocalError::NotReady {
                    service: format!("Debezium connector {name}"),
                    condition: condition.into(),
                    waited: started.elapsed(),
                    last_attempt,
                    log: self.worker_log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn lifecycle(&self, method: reqwest::Method, path: &str) -> Result<(), LocalError> {
        let url = format!("{}/{path}", self.base_url);
        let request = format!("{method} {url}");
        let response = self
            .http
            .request(method, &url)
            .send()
            .await
            .map_err(|e| self.rest_error(&request, "no answer", &e.to_string()))?;
        self.expect_success(&request, response).await
    }

    async fn expect_success(
        &self,
        request: &str,
        response: reqwest::Response,
    ) -> Result<(), LocalError> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(self.rest_error(request, &status.to_string(), &body))
    }

    fn rest_error(&self, request: &str, status: &str, body: &str) -> LocalError {
        LocalError::ConnectRest {
            url: self.base_url.clone(),
            request: request.to_owned(),
            status: status.to_owned(),
            body: body.to_owned(),
            log: self.worker_log.clone(),
        }
    }
}

/// The worker's log from byte `mark` on (all of it when the file is shorter: a new worker wrote a new file); empty
/// when it cannot be read. Only the part after `mark` is read: the log grows to megabytes and this runs every poll.
fn read_from(path: &std::path::Path, mark: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < mark { 0 } else { mark };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether a worker log excerpt shows a task streaming after the last restart in it: Debezium's "Connected to
/// binlog at" after Connect's last "Completed plan to restart connector" (or anywhere, when the excerpt has no
/// restart plan: a worker started anew). A task a restart plan replaced may have connected before the plan
/// completed; only a connection after it counts.
fn streaming_since_restart(log: &str) -> bool {
    let after_plan = log
        .rfind("Completed plan to restart connector")
        .map_or(log, |at| &log[at..]);
    after_plan.contains("Connected to binlog at")
}

/// Whether a committed Debezium binlog offset was taken during a snapshot that had not completed: Debezium puts a
/// `snapshot` key (`true`, or the snapshot kind such as `"INITIAL"`) in offsets taken while it snapshots, and
/// `snapshot_completed: true` once the snapshot is done; streaming offsets carry neither.
fn in_snapshot(offset: &serde_json::Value) -> bool {
    let marked = match offset.get("snapshot") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
        Some(serde_json::Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        Some(_) => true,
    };
    let completed = matches!(
        offset.get("snapshot_completed"),
        Some(serde_json::Value::Bool(true))
    ) || offset.get("snapshot_completed").and_then(|v| v.as_str()) == Some("true");
    marked && !completed
}

#[cfg(test)]
mod tests {
    use super::{in_snapshot, streaming_since_restart};

    #[test]
    fn only_a_binlog_connection_after_the_last_restart_plan_counts() {
        let earlier = "[1] INFO Connected to binlog at 127.0.0.1:1, starting at ...\n";
        let plan = "[2] INFO [Worker] Completed plan to restart connector and 1 of 1 tasks ...\n";
        let crash = "[3] ERROR Task threw an uncaught and unrecoverable exception\n";
        // The task a restart plan replaced had connected: not the restarted one.
        assert!(!streaming_since_restart(&format!("{earlier}{plan}{crash}")));
        assert!(!streaming_since_restart(&format!("{earlier}{plan}")));
        assert!(streaming_since_restart(&format!(
            "{earlier}{plan}{earlier}"
        )));
        // Two plans: only after the last.
        assert!(!streaming_since_restart(&format!("{plan}{earlier}{plan}")));
        // A worker started anew: no plan, a connection anywhere.
        assert!(streaming_since_restart(earlier));
        assert!(!streaming_since_restart(""));
    }
    use serde_json::json;

    #[test]
    fn offsets_taken_during_a_snapshot_are_told_apart() {
        assert!(in_snapshot(
            &json!({"file": "binlog.000001", "pos": 251177, "gtids": "0-1-108", "snapshot": true})
        ));
        assert!(in_snapshot(&json!({"snapshot": "true", "pos": 4})));
        assert!(in_snapshot(
            &json!({"snapshot": "INITIAL", "snapshot_completed": false, "pos": 4})
        ));
        assert!(!in_snapshot(
            &json!({"snapshot": "INITIAL", "snapshot_completed": true, "pos": 4})
        ));
        assert!(!in_snapshot(
            &json!({"file": "binlog.000001", "pos": 251177, "gtids": "0-1-108"})
        ));
        assert!(!in_snapshot(&json!({"snapshot": false})));
    }
}
