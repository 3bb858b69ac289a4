//! Shared by the model tests: the brute-force per-group reference of one-pass DP-SGD clipping.
#![allow(dead_code)]

pub mod cli;
pub mod meds;
pub mod node;

use kernels::{Cpu, GroupRows, NormStrategy, OptimizerKind};
use medtrain::model::{HostBatch, Model};
use medtrain::privacy::noise::NoiseSource;
use medtrain::train::{DpSgd, Privacy, Trainer};

pub type BoxedModel = Box<dyn Model<Cpu>>;

pub fn trainer(be: &Cpu, m: BoxedModel) -> Trainer<Cpu, BoxedModel> {
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: 0.0, expected_batch: 1.0 },
        noise: NoiseSource::seeded([1; 32]),
    };
    Trainer::new(be, m, OptimizerKind::sgd(0.0), privacy).unwrap()
}

pub fn grads(t: &Trainer<Cpu, BoxedModel>) -> Vec<Vec<f32>> {
    t.model().params().iter().map(|p| p.grad.clone()).collect()
}

fn norm(g: &[Vec<f32>]) -> f64 {
    g.iter().flatten().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()
}

/// One-pass clipping (per-group norms from one backward, then the clipped sum) against brute force:
/// each group alone, the plain gradient of its summed loss, its norm over all parameters, clipped at
/// a clip norm between the group norms (some clipped, some not) and summed. Every parameter
/// gradient within 2e-4 of the largest.
pub fn check_against_brute_force(
    what: &str,
    make: &dyn Fn(&Cpu) -> BoxedModel,
    host: &HostBatch,
    groups: &GroupRows,
    strategy: NormStrategy,
) {
    let be = Cpu::new(2).unwrap();
    let mut tr = trainer(&be, make(&be));
    let per_group: Vec<Vec<Vec<f32>>> = (0..groups.groups())
        .map(|g| {
            let idx: Vec<usize> = (groups.offsets[g]..groups.offsets[g + 1]).collect();
            let sub = host.select(&idx);
            tr.gradients(&be, &sub.upload(&be).unwrap(), &GroupRows::single(sub.examples), None, 1.0).unwrap();
            grads(&tr)
        })
        .collect();
    let norms: Vec<f64> = per_group.iter().map(|g| norm(g)).collect();
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    let clip = sorted[sorted.len() / 2] as f32 * 0.999;
    let mut want: Vec<Vec<f64>> = per_group[0].iter().map(|p| vec![0.0; p.len()]).collect();
    for (g, n) in per_group.iter().zip(&norms) {
        let c = (clip as f64 / n).min(1.0);
        for (w, p) in want.iter_mut().zip(g) {
            w.iter_mut().zip(p).for_each(|(w, &v)| *w += c * v as f64);
        }
    }
    let mut tr = trainer(&be, make(&be));
    tr.set_strategy(strategy);
    let stats = tr.gradients(&be, &host.upload(&be).unwrap(), groups, Some(clip), 1.0).unwrap();
    let expected_clipped = norms.iter().filter(|&&n| n > clip as f64).count();
    assert_eq!(stats.clipped_groups, expected_clipped, "{what}: groups clipped");
    let names: Vec<String> = tr.model().params().iter().map(|p| p.name.clone()).collect();
    for ((name, got), want) in names.iter().zip(grads(&tr)).zip(&want) {
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-3);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 2e-4 * scale,
                "{what} {strategy:?} groups {:?}: {name}[{i}] one-pass {g}, brute force {w}",
                groups.offsets
            );
        }
    }
}
