//! Kafka's checkpoint files: the offset checkpoints (`log-start-offset-checkpoint`,
//! `replication-offset-checkpoint`) and the `leader-epoch-checkpoint`, their text and their parsing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::{io_error, StorageError};

/// (topic, partition) → offset: what Kafka's offset checkpoint files hold.
pub(crate) type OffsetCheckpoint = BTreeMap<(String, i32), i64>;

/// Kafka's offset checkpoint text: version 0, the entry count, then `topic partition offset` lines.
pub(super) fn offset_checkpoint_text(offsets: &OffsetCheckpoint) -> String {
    let mut text = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    text
}

/// Kafka's `leader-epoch-checkpoint` text: version 0, the entry count, then `epoch startOffset` lines.
pub(crate) fn leader_epoch_checkpoint_text(epochs: &[(i32, i64)]) -> String {
    let mut text = format!("0\n{}\n", epochs.len());
    for (epoch, start_offset) in epochs {
        text.push_str(&format!("{epoch} {start_offset}\n"));
    }
    text
}

/// Parses a `leader-epoch-checkpoint` (see [`leader_epoch_checkpoint_text`]); `path` names the file in errors.
pub(crate) fn parse_leader_epoch_checkpoint(
    path: &Path,
    text: &str,
) -> Result<Vec<(i32, i64)>, StorageError> {
    let bad = |reason: String| StorageError::Metadata {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(bad("the first line is not version 0".to_string()));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("the second line is not an entry count".to_string()))?;
    let mut epochs: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
    for (n, line) in lines.enumerate() {
        let entry = match line.split(' ').collect::<Vec<_>>().as_slice() {
            [epoch, offset] => epoch.parse::<i32>().ok().zip(offset.parse::<i64>().ok()),
            _ => None,
        };
        let (epoch, offset) =
            entry.ok_or_else(|| bad(format!("line {} is not 'epoch startOffset'", n + 3)))?;
        if epochs
            .last()
            .is_some_and(|&(e, o)| e >= epoch || o > offset)
        {
            return Err(bad(format!(
                "line {}: epochs and start offsets must grow",
                n + 3
            )));
        }
        epochs.push((epoch, offset));
    }
    if epochs.len() != count {
        return Err(bad(format!(
            "{} entries, but the count says {count}",
            epochs.len()
        )));
    }
    Ok(epochs)
}

pub(super) fn read_checkpoint(path: &Path) -> Result<OffsetCheckpoint, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let bad = |reason: String| StorageError::Metadata {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(bad("the first line is not version 0".to_string()));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("the second line is not an entry count".to_string()))?;
    let mut out = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let entry = match fields.as_slice() {
            [topic, partition, offset] => partition
                .parse::<i32>()
                .ok()
                .zip(offset.parse::<i64>().ok())
                .map(|(p, o)| ((topic.to_string(), p), o)),
            _ => None,
        };
        let (key, offset) =
            entry.ok_or_else(|| bad(format!("line {} is not 'topic partition offset'", n + 3)))?;
        out.insert(key, offset);
    }
    if out.len() != count {
        return Err(bad(format!(
            "{} entries, but the count says {count}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_checkpoint_round_trips_in_kafkas_format() {
        let path = Path::new("/logs/broker-1/obs-0/leader-epoch-checkpoint");
        let epochs = vec![(0, 0), (2, 17), (5, 17), (6, 230)];
        let text = leader_epoch_checkpoint_text(&epochs);
        assert_eq!(text, "0\n4\n0 0\n2 17\n5 17\n6 230\n");
        assert_eq!(parse_leader_epoch_checkpoint(path, &text).unwrap(), epochs);
        assert_eq!(
            parse_leader_epoch_checkpoint(path, &leader_epoch_checkpoint_text(&[])).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_bad_leader_epoch_checkpoint_is_an_error_naming_the_file() {
        let path = Path::new("/logs/broker-2/obs-0/leader-epoch-checkpoint");
        for (text, why) in [
            ("1\n0\n", "version 0"),
            ("0\n2\n0 0\n", "count says 2"),
            ("0\n1\n0\n", "line 3"),
            ("0\n2\n3 10\n2 20\n", "must grow"),
            ("0\n2\n1 10\n2 5\n", "must grow"),
        ] {
            let error = parse_leader_epoch_checkpoint(path, text).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains(why),
                "{text:?}: {message}"
            );
        }
    }
}
