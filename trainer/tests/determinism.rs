//! A training step gives the same bits with 1 or 2 threads: every reduction has a fixed order.

use kernels::{Cpu, GroupRows, OptimizerKind};
use medtrain::model::workload::{Workload, ALL};
use medtrain::privacy::noise::NoiseSource;
use medtrain::train::{DpSgd, Privacy, Trainer};

fn run(threads: usize, w: Workload, dp: bool, groups: &GroupRows) -> Vec<Vec<u32>> {
    let be = Cpu::new(threads).unwrap();
    let privacy = if dp {
        Privacy::Dp {
            params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: groups.groups() as f32 },
            noise: NoiseSource::seeded([5; 32]),
        }
    } else {
        Privacy::NonPrivate
    };
    let mut tr = Trainer::new(&be, w.model(&be, 1).unwrap(), OptimizerKind::adamw(1e-3), privacy).unwrap();
    let batch = w.random_batch(groups.examples(), 2).upload(&be).unwrap();
    for _ in 0..2 {
        tr.step(&be, &batch, groups).unwrap();
    }
    tr.model().params().iter().map(|p| p.value.iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn training_steps_are_bitwise_identical_on_1_and_2_threads() {
    for w in ALL {
        let b = if w == Workload::LabMlp { 64 } else { 8 };
        let layouts = [GroupRows::per_example(b), GroupRows { offsets: vec![0, 1, b / 2, b] }];
        for groups in &layouts {
            for dp in [false, true] {
                let one = run(1, w, dp, groups);
                let two = run(2, w, dp, groups);
                assert!(
                    one == two,
                    "{} dp={dp} groups={:?}: parameters differ between 1 and 2 threads",
                    w.name(),
                    groups.offsets
                );
            }
        }
    }
}

#[test]
fn noise_key_changes_the_result_and_a_fixed_key_repeats_it() {
    let groups = GroupRows::per_example(8);
    let a = run(2, Workload::LabTransformer, true, &groups);
    let b = run(2, Workload::LabTransformer, true, &groups);
    assert!(a == b);
    let be = Cpu::new(2).unwrap();
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: 8.0 },
        noise: NoiseSource::seeded([6; 32]),
    };
    let w = Workload::LabTransformer;
    let mut tr = Trainer::new(&be, w.model(&be, 1).unwrap(), OptimizerKind::adamw(1e-3), privacy).unwrap();
    let batch = w.random_batch(8, 2).upload(&be).unwrap();
    for _ in 0..2 {
        tr.step(&be, &batch, &groups).unwrap();
    }
    let c: Vec<Vec<u32>> = tr.model().params().iter().map(|p| p.value.iter().map(|v| v.to_bits()).collect()).collect();
    assert!(a != c, "a different noise key must give different weights");
}
