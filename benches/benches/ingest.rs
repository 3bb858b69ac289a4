//! FHIR Observation ingest: NDJSON bytes per second into the event model (the target is
//! 100 MB/s on 2 cores), for a full read (events kept) and for `data check` (counted only).
//!
//!     cargo bench -p medtrain-benches --bench ingest
//!
//! The input is the demo cohort's Observation.ndjson (2,000 subjects, about 90 MB), read from the page
//! cache; thread count from RAYON_NUM_THREADS (default: one per core).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medtrain::data::{self, ReadOptions};

fn ingest(c: &mut Criterion) {
    let dir = std::env::temp_dir().join("medtrain-bench-ingest");
    let obs = dir.join("Observation.ndjson");
    if !obs.is_file() {
        data::demo::write(&dir, 2000, 1).unwrap();
    }
    let bytes = std::fs::metadata(&obs).unwrap().len();
    let mut group = c.benchmark_group("fhir_ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    for (name, keep) in [("observations/read", true), ("observations/check", false)] {
        let opts = ReadOptions { keep_events: keep, vitals: true, ..Default::default() };
        group.bench_function(name, |b| b.iter(|| data::read(&obs, &opts).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
