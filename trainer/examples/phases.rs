//! Times the phases of a DP step separately (profiling aid): `cargo run --release --example phases -- lab-mlp`.
use kernels::{Backend, Cpu, GroupRows, NoiseKey, OptimizerKind};
use medtrain::model::workload::Workload;
use medtrain::train::{Privacy, Trainer};
use std::time::Instant;

fn median(mut f: impl FnMut(), n: usize) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "lab-mlp".into());
    let w: Workload = name.parse().unwrap();
    let be = Cpu::new(2).unwrap();
    let b = w.default_batch();
    let batch = w.random_batch(b, 0).upload(&be).unwrap();
    let groups = GroupRows::per_example(b);
    let mut tr = Trainer::new(&be, w.model(&be, 0).unwrap(), OptimizerKind::sgd(0.05), Privacy::NonPrivate).unwrap();
    let n = tr.model().num_params();
    println!("{name}: {n} params");
    let single = GroupRows::single(b);
    println!(
        "forward+backward+plain grads  {:8.3} ms",
        median(|| drop(tr.gradients(&be, &batch, &single, None, 1.0).unwrap()), 20)
    );
    println!(
        "forward+backward+clipped grads {:8.3} ms",
        median(|| drop(tr.gradients(&be, &batch, &groups, Some(1.0), 1.0).unwrap()), 20)
    );
    println!("forward only                  {:8.3} ms", median(|| drop(tr.predict(&be, &batch).unwrap()), 20));
    let mut buf = vec![0.0f32; n];
    let key = NoiseKey { key: [1; 32], stream: 0 };
    println!(
        "noise ({n} normals)        {:8.3} ms",
        median(|| be.add_normal(&mut buf, 1.0, 1.0, 1.0 / 4096.0, &key).unwrap(), 20)
    );
    // the DP phases on their own, after one forward and backward
    use kernels::nn::GradReduce;
    use kernels::NormStrategy;
    use medtrain::model::Model;
    let mut m = w.model(&be, 0).unwrap();
    m.forward(&be, &batch).unwrap();
    let dl = vec![0.01f32; b * m.outputs()];
    m.backward(&be, &batch, &dl).unwrap();
    let mut norms = vec![0.0f32; b];
    for s in [NormStrategy::Auto, NormStrategy::Ghost, NormStrategy::Materialize] {
        println!(
            "group norms {s:?}             {:8.3} ms",
            median(|| m.add_group_sq_norms(&be, &batch, &mut norms, &groups, s).unwrap(), 10)
        );
    }
    let factors = vec![0.5f32; b];
    println!(
        "clipped param grads           {:8.3} ms",
        median(|| m.param_grads(&be, &batch, &GradReduce { groups: &groups, factors: Some(&factors) }).unwrap(), 10)
    );
    println!(
        "plain param grads             {:8.3} ms",
        median(|| m.param_grads(&be, &batch, &GradReduce::plain(&single)).unwrap(), 10)
    );
    println!("backward (activation grads)   {:8.3} ms", median(|| m.backward(&be, &batch, &dl).unwrap(), 10));
    println!("full nodp step                {:8.3} ms", median(|| drop(tr.step(&be, &batch, &groups).unwrap()), 20));
}
