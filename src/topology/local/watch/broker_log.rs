//! The brokers' logs: each file tailed for the whole lines it gained, and the lines the watch reacts to
//! (truncations, stated end offsets, fetch offset resets, segment deletions, DeleteRecords, controlled shutdowns).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::history::DeletionReason;

/// At most this much of one log is read per poll; the rest waits for the next.
const MAX_LOG_READ: u64 = 16 * 1024 * 1024;

/// Reads what a log file gained since the last read, in whole lines.
pub(super) struct LogTail {
    pub(super) broker: i32,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    pub(super) fn at_end(broker: i32, path: PathBuf) -> LogTail {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogTail {
            broker,
            path,
            offset,
            partial: Vec::new(),
        }
    }

    pub(super) fn read_new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Replaced or truncated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let Ok(read) = file.take(MAX_LOG_READ).read_to_end(&mut bytes) else {
            return Vec::new();
        };
        self.offset += read as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }
}

/// A broker log line the watch reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogLine {
    /// `[UnifiedLog partition=<tp>, dir=…] Truncating to offset <offset>`: records at and above `offset` dropped.
    TruncatedTo {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A line stating a replica's log end offset: `Truncating to <N> has no effect as the largest offset in the
    /// log is <M>` (end M + 1), `Completed load of Log(… logEndOffset=<M>)`.
    EndOffset {
        topic: String,
        partition: i32,
        end_offset: i64,
    },
    /// `Reset fetch offset for partition <tp> from <from> to current leader's latest offset <to>`.
    ResetFetchOffset {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    /// `[UnifiedLog partition=<tp>, dir=…] Deleting segment(s) … due to <reason>`.
    SegmentDeletion {
        topic: String,
        partition: i32,
        reason: DeletionReason,
    },
    /// `[UnifiedLog partition=<tp>, dir=…] Incremented log start offset to <N> due to client delete records
    /// request`.
    RecordsDeleted { topic: String, partition: i32 },
    /// `[KafkaServer id=<broker>] Starting controlled shutdown` (ZooKeeper mode), `[BrokerLifecycleManager
    /// id=<broker>] Beginning controlled shutdown.` (KRaft).
    ControlledShutdown { broker: i32 },
}

pub(super) fn parse_line(line: &str) -> Option<LogLine> {
    if let Some(at) = line.find("[UnifiedLog partition=") {
        let rest = &line[at + "[UnifiedLog partition=".len()..];
        let (tp, rest) = rest.split_once(", dir=")?;
        let (topic, partition) = split_topic_partition(tp)?;
        let (_, message) = rest.split_once("] ")?;
        if let Some(offset) = message.strip_prefix("Truncating to offset ") {
            return Some(LogLine::TruncatedTo {
                topic,
                partition,
                offset: leading_number(offset)?,
            });
        }
        if let Some(no_effect) = message.strip_prefix("Truncating to ") {
            let (_, largest) =
                no_effect.split_once(" has no effect as the largest offset in the log is ")?;
            return Some(LogLine::EndOffset {
                topic,
                partition,
                end_offset: leading_number(largest)? + 1,
            });
        }
        if message.starts_with("Deleting segment") {
            let (_, why) = message.split_once(" due to ")?;
            let reason = if why.contains("retention time") {
                DeletionReason::RetentionTime
            } else if why.contains("retention size") {
                DeletionReason::RetentionSize
            } else if why.contains("log start offset") {
                DeletionReason::LogStartOffset
            } else {
                return None;
            };
            return Some(LogLine::SegmentDeletion {
                topic,
                partition,
                reason,
            });
        }
        if message.starts_with("Incremented log start offset to ")
            && message.contains(" due to client delete records request")
        {
            return Some(LogLine::RecordsDeleted { topic, partition });
        }
        return None;
    }
    if let Some(at) = line.find("Completed load of Log(") {
        let fields = &line[at + "Completed load of Log(".len()..];
        let fields = &fields[..fields.find(") with ")?];
        let field = |name: &str| {
            fields
                .split(", ")
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        return Some(LogLine::EndOffset {
            topic: field("topic")?.to_owned(),
            partition: field("partition")?.parse().ok()?,
            end_offset: field("logEndOffset")?.parse().ok()?,
        });
    }
    if let Some(at) = line.find("Reset fetch offset for partition ") {
        let rest = &line[at + "Reset fetch offset for partition ".len()..];
        let (tp, rest) = rest.split_once(" from ")?;
        let (from, rest) = rest.split_once(" to current leader's latest offset ")?;
        let (topic, partition) = split_topic_partition(tp)?;
        return Some(LogLine::ResetFetchOffset {
            topic,
            partition,
            from: from.parse().ok()?,
            to: leading_number(rest)?,
        });
    }
    for (prefix, announcement) in [
        ("[KafkaServer id=", "Starting controlled shutdown"),
        (
            "[BrokerLifecycleManager id=",
            "Beginning controlled shutdown",
        ),
    ] {
        if let Some(at) = line.find(prefix) {
            let rest = &line[at + prefix.len()..];
            let (id, message) = rest.split_once("] ")?;
            if message.starts_with(announcement) {
                return Some(LogLine::ControlledShutdown {
                    broker: id.parse().ok()?,
                });
            }
        }
    }
    None
}

/// `dbserver1.openmrs.obs-2` → (`dbserver1.openmrs.obs`, 2).
fn split_topic_partition(tp: &str) -> Option<(String, i32)> {
    let (topic, partition) = tp.rsplit_once('-')?;
    Some((topic.to_owned(), partition.parse().ok()?))
}

fn leading_number(text: &str) -> Option<i64> {
    let end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn parses_the_lines_kafka_writes() {
        assert_eq!(
            parse_line(TRUNCATED),
            Some(LogLine::TruncatedTo {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 1,
                offset: 1
            })
        );
        assert_eq!(parse_line(FETCHER_TRUNCATION), None);
        assert_eq!(parse_line(SEGMENT_DELETION_START), None);
        assert_eq!(
            parse_line(NO_EFFECT),
            Some(LogLine::EndOffset {
                topic: "connect-offsets".into(),
                partition: 0,
                end_offset: 0
            })
        );
        assert_eq!(
            parse_line(LOADED),
            Some(LogLine::EndOffset {
                topic: "dbserver1.openmrs.patient_identifier".into(),
                partition: 1,
                end_offset: 21
            })
        );
        assert_eq!(
            parse_line(CONTROLLED),
            Some(LogLine::ControlledShutdown { broker: 3 })
        );
        assert_eq!(
            parse_line(CONTROLLED_KRAFT),
            Some(LogLine::ControlledShutdown { broker: 2 })
        );
        assert_eq!(
            parse_line(RETENTION_TIME),
            Some(LogLine::SegmentDeletion {
                topic: "dbserver1.openmrs.encounter".into(),
                partition: 0,
                reason: DeletionReason::RetentionTime
            })
        );
        assert_eq!(
            parse_line(RETENTION_SIZE),
            Some(LogLine::SegmentDeletion {
                topic: "watch-retention".into(),
                partition: 0,
                reason: DeletionReason::RetentionSize
            })
        );
        assert_eq!(
            parse_line(DELETE_RECORDS),
            Some(LogLine::RecordsDeleted {
                topic: "watch-retention".into(),
                partition: 0
            })
        );
        assert_eq!(
            parse_line(RESET_FETCH),
            Some(LogLine::ResetFetchOffset {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 0,
                from: 12,
                to: 9
            })
        );
        assert_eq!(parse_line("[2026-12-03 12:16:01,002] INFO [KafkaServer id=3] started (kafka.server.KafkaServer)"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn a_log_tail_reads_whole_new_lines_only() {
        let dir = std::env::temp_dir().join(format!("watch-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kafka-1.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut tail = LogTail::at_end(1, path.clone());
        assert!(tail.read_new_lines().is_empty());
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"first\nsec").unwrap();
        assert_eq!(tail.read_new_lines(), ["first"]);
        file.write_all(b"ond\n").unwrap();
        assert_eq!(tail.read_new_lines(), ["second"]);
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(tail.read_new_lines(), ["new"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
