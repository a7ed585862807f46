//! The shrunk failing case written as a scenario file that `etl-harness run <file> --seed N` (or `etl-harness
//! diff <file> --backends …` for a differential campaign) reproduces.

use std::path::{Path, PathBuf};

use super::CampaignError;
use crate::scenario::Scenario;

/// Writes the shrunk scenario as `<out_dir>/<name>-seed<N>.toml` with a header saying how to reproduce it.
pub(super) fn write_failure(
    out_dir: &Path,
    scenario: &Scenario,
    failed: &[String],
    campaign_seed: u64,
    backends: &[crate::scenario::Backend],
) -> Result<PathBuf, CampaignError> {
    let path = out_dir.join(format!("{}-seed{}.toml", scenario.name, scenario.seed));
    let write = |source| CampaignError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(write)?;
    let text = format!(
        "# Shrunk by a fault campaign (campaign seed {campaign_seed}): {} broke with {} fault(s).\n\
         # Reproduce: {}\n{}",
        failed.join(", "),
        scenario.faults.len(),
        super::report::reproduce(&path, backends, scenario.seed),
        scenario.to_toml()
    );
    std::fs::write(&path, text).map_err(write)?;
    Ok(path)
}
