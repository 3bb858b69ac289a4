//! The host side of the CUDA embedding backward: the scatter lists of `embedding_backward` (the rows
//! of each token id, in row order) and the per-group order of `embedding_group_sq_norms`, built on the
//! host each call from the batch's ids. notes-bert's word embeddings at B = 1024: 1024 x 128 ids of a
//! 30522-word vocabulary, one group per example.
//!
//!     cargo bench -p medtrain-benches --bench cuda_plan
//!
//! No GPU is needed: these run before the launch.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::cuda::plan;
use kernels::GroupRows;

fn lists(c: &mut Criterion) {
    let (b, t, vocab, d) = (1024usize, 128usize, 30522usize, 384usize);
    // a fixed pseudo-random batch: Zipf-like ids (frequent words low), [CLS] first, padding 0 at the end
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids: Vec<u32> = (0..b * t)
        .map(|i| match i % t {
            0 => 101,
            p if p >= t - t / 10 => 0,
            _ => {
                let u = (next() % 1_000_000) as f64 / 1_000_000.0;
                ((vocab as f64).powf(u) as u32).min(vocab as u32 - 1)
            }
        })
        .collect();
    let layout = GroupRows::per_example(b);
    let mut group = c.benchmark_group("cuda_plan");
    group.sample_size(20);
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("embedding_backward_lists", |bench| {
        bench.iter(|| plan::embedding_backward_lists(vocab * d, &ids, ids.len() * d, d, None, &layout, t).unwrap())
    });
    group.bench_function("embedding_group_order", |bench| {
        bench.iter(|| plan::embedding_group_order(b, &ids, ids.len() * d, d, &layout, t).unwrap())
    });
    group.finish();
}

criterion_group!(benches, lists);
criterion_main!(benches);
