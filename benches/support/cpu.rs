//! CPU time for the benchmarks that measure one thread's work (the machine is shared, so wall time overstates
//! the cost).

/// CPU time this process has used, in seconds, from /proc/self/schedstat (NaN where there is none).
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok())
        })
        .map(|ns| ns / 1e9)
        .unwrap_or(f64::NAN)
}
