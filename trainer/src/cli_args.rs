//! Checks shared by the commands' size flags, applied before anything is sized from them: each flag
//! has a range, and an error names the flag and the range.

/// The number of CPU threads to start for `--threads`: 0 means one per available core; more than the
/// cores available is capped there, with a warning on stderr (a pool of 100000 threads never finishes
/// starting, and more threads than cores only contend).
pub fn threads(flag: &str, requested: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if requested > cores {
        eprintln!("warning: {flag} {requested} capped at {cores} (the cores available to this process)");
        return cores;
    }
    requested
}

/// `value` when it lies in `[lo, hi]`, else an error naming the flag.
pub fn within<T: PartialOrd + std::fmt::Display + Copy>(flag: &str, value: T, lo: T, hi: T) -> anyhow::Result<T> {
    if value >= lo && value <= hi {
        Ok(value)
    } else {
        anyhow::bail!("{flag}: must be in [{lo}, {hi}] (got {})", crate::short_number(value))
    }
}

/// `bench --batch`: at most this many times the workload's default batch, or
/// [`BENCH_BATCH_MIN_LIMIT`] where that is more. Activations grow linearly with the batch (notes-bert
/// at 4096: tens of GB, a large GPU's memory); past the limit the run is refused before allocating,
/// and within it a device without the memory reports out of memory (never aborts).
pub const BENCH_BATCH_FACTOR: usize = 16;
/// The limit of `bench --batch` is at least this (the GPU benchmarks' largest batch).
pub const BENCH_BATCH_MIN_LIMIT: usize = 4096;
/// `bench --steps`: timed steps.
pub const MAX_BENCH_STEPS: usize = 100_000;
/// `demo --subjects` and `demo-data --subjects`: the synthetic cohort is held in memory by `demo`
/// and written as about 20 KB of NDJSON per subject by `demo-data`.
pub const MAX_DEMO_SUBJECTS: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_count_over_the_cores_is_capped_and_zero_stays_automatic() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads("--threads", 100_000), cores);
        assert_eq!(threads("--threads", 0), 0);
        assert_eq!(threads("--threads", 1), 1);
    }

    #[test]
    fn a_value_out_of_range_names_the_flag() {
        let e = within("--batch", 1_000_000_000usize, 1, 4096).unwrap_err().to_string();
        assert!(e.contains("--batch") && e.contains("4096"), "{e}");
        assert_eq!(within("--batch", 64usize, 1, 4096).unwrap(), 64);
    }
}

/// Whether two paths name one file (the same device and inode; false when either does not exist).
pub fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
