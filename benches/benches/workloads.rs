//! Criterion benches of `medtrain bench`'s workloads (one full training step each, nodp and dp) and of
//! the DP hot paths on their own: the noise generator and the per-group norms.
//!
//!     cargo bench -p medtrain-benches
//!
//! `medtrain bench --json` gives the same step timings in the format of the peer script; these benches
//! add criterion's statistics and its comparison with the last run.

use criterion::{criterion_group, criterion_main, Criterion};
use kernels::{Backend, Cpu, GroupRows, NoiseKey, OptimizerKind};
use medtrain::model::workload::ALL;
use medtrain::privacy::noise::NoiseSource;
use medtrain::train::{DpSgd, Privacy, Trainer};

fn threads() -> usize {
    std::env::var("MEDTRAIN_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

fn steps(c: &mut Criterion) {
    let be = Cpu::new(threads()).unwrap();
    let mut group = c.benchmark_group("step");
    group.sample_size(20);
    for w in ALL {
        let b = w.default_batch();
        let batch = w.random_batch(b, 0).upload(&be).unwrap();
        let groups = GroupRows::per_example(b);
        for dp in [false, true] {
            let privacy = if dp {
                Privacy::Dp {
                    params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: b as f32 },
                    noise: NoiseSource::from_os_entropy().unwrap(),
                }
            } else {
                Privacy::NonPrivate
            };
            let mut tr = Trainer::new(&be, w.model(&be, 0).unwrap(), OptimizerKind::sgd(0.05), privacy).unwrap();
            let name = format!("{}/{}", w.name(), if dp { "dp" } else { "nodp" });
            group.bench_function(name, |bench| bench.iter(|| tr.step(&be, &batch, &groups).unwrap()));
        }
    }
    group.finish();
}

fn noise(c: &mut Criterion) {
    let be = Cpu::new(threads()).unwrap();
    // lab-mlp's parameter count: one draw per weight per step
    let mut buf = vec![0.0f32; 852_737];
    let key = NoiseKey { key: [1; 32], stream: 0 };
    c.bench_function("noise/852737-normals", |bench| {
        bench.iter(|| be.add_normal(&mut buf, 1.0, 1.0, 1.0 / 4096.0, &key).unwrap())
    });
}

criterion_group!(benches, steps, noise);
criterion_main!(benches);
