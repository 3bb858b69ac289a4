//! The training step's contract: empty batches are valid DP steps, a diverged model is an error, and
//! invalid DP parameters are refused.

use kernels::{Cpu, GroupRows, KernelError, OptimizerKind};
use medtrain::model::workload::Workload;
use medtrain::privacy::noise::NoiseSource;
use medtrain::train::{DpSgd, Privacy, Trainer};

fn dp(be: &Cpu, sigma: f32) -> Trainer<Cpu, Box<dyn medtrain::model::Model<Cpu>>> {
    let w = Workload::LabTransformer;
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: sigma, expected_batch: 4.0 },
        noise: NoiseSource::seeded([3; 32]),
    };
    Trainer::new(be, w.model(be, 0).unwrap(), OptimizerKind::sgd(1.0), privacy).unwrap()
}

#[test]
fn an_empty_poisson_batch_is_a_valid_step_that_adds_only_noise() {
    let be = Cpu::new(2).unwrap();
    let mut tr = dp(&be, 1.0);
    let before: Vec<Vec<f32>> = tr.model().params().iter().map(|p| p.value.clone()).collect();
    let empty = Workload::LabTransformer.random_batch(0, 1).upload(&be).unwrap();
    tr.step(&be, &empty, &GroupRows::per_example(0)).unwrap();
    // update = -lr * noise / expected batch, noise ~ N(0, (sigma C)^2): std 0.25 per coordinate
    let deltas: Vec<f64> = tr
        .model()
        .params()
        .iter()
        .zip(&before)
        .flat_map(|(p, b)| p.value.iter().zip(b).map(|(&a, &b)| (a - b) as f64).collect::<Vec<_>>())
        .collect();
    let n = deltas.len() as f64;
    let std = (deltas.iter().map(|d| d * d).sum::<f64>() / n).sqrt();
    assert!((std - 0.25).abs() < 0.01, "noise std per coordinate {std}, expected 0.25");
}

#[test]
fn a_diverged_model_stops_with_an_error_instead_of_training_on_nan() {
    let be = Cpu::new(2).unwrap();
    // a model whose weights went to NaN (built so: the trainer's weights change only by its steps)
    let mut model = Workload::LabTransformer.model(&be, 0).unwrap();
    model.params_mut()[0].value[0] = f32::NAN;
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: 4.0 },
        noise: NoiseSource::seeded([3; 32]),
    };
    let mut tr = Trainer::new(&be, model, OptimizerKind::sgd(1.0), privacy).unwrap();
    let batch = Workload::LabTransformer.random_batch(4, 1).upload(&be).unwrap();
    let err = tr.step(&be, &batch, &GroupRows::per_example(4)).unwrap_err();
    assert!(err.to_string().contains("loss is not finite"), "{err}");
}

#[test]
fn invalid_dp_parameters_are_refused() {
    let be = Cpu::new(1).unwrap();
    for params in [
        DpSgd { clip_norm: 0.0, noise_multiplier: 1.0, expected_batch: 4.0 },
        DpSgd { clip_norm: 1.0, noise_multiplier: -1.0, expected_batch: 4.0 },
        DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: 0.0 },
        DpSgd { clip_norm: f32::NAN, noise_multiplier: 1.0, expected_batch: 4.0 },
    ] {
        let privacy = Privacy::Dp { params, noise: NoiseSource::seeded([0; 32]) };
        let r = Trainer::new(&be, Workload::LabMlp.model(&be, 0).unwrap(), OptimizerKind::sgd(0.1), privacy);
        assert!(matches!(r, Err(KernelError::Invalid { .. })), "{params:?} accepted");
    }
}

#[test]
fn non_private_training_lowers_the_loss() {
    // the whole stack learns: a few full-batch steps on a fixed batch reduce its loss
    let be = Cpu::new(2).unwrap();
    for w in [Workload::LabMlp, Workload::NotesEncoder] {
        let mut tr =
            Trainer::new(&be, w.model(&be, 0).unwrap(), OptimizerKind::adamw(1e-3), Privacy::NonPrivate).unwrap();
        let batch = w.random_batch(16, 5).upload(&be).unwrap();
        let groups = GroupRows::per_example(16);
        let first = tr.step(&be, &batch, &groups).unwrap().loss;
        let mut last = first;
        for _ in 0..15 {
            last = tr.step(&be, &batch, &groups).unwrap().loss;
        }
        assert!(last < 0.7 * first, "{}: loss {first} -> {last}", w.name());
    }
}

/// A step given as micro-batches of whole groups makes the update of the whole batch (to rounding),
/// private or not, with the same statistics; the cut never splits a group and keeps each part within
/// the limit unless one group alone is larger.
#[test]
fn micro_batches_of_whole_groups_make_the_update_of_the_whole_batch() {
    use medtrain::train::micro_batches;
    let be = Cpu::new(2).unwrap();
    let w = Workload::LabTransformer;
    let host = w.random_batch(12, 5);
    let groups = GroupRows { offsets: vec![0, 1, 4, 4, 9, 10, 12] };
    let parts = micro_batches(&host, &groups, 4);
    let sizes: Vec<Vec<usize>> = parts.iter().map(|(_, g)| g.offsets.clone()).collect();
    assert_eq!(sizes, vec![vec![0, 1, 4, 4], vec![0, 5], vec![0, 1, 3]], "cut at group boundaries");
    let rejoined: Vec<_> = parts.iter().flat_map(|(b, _)| (0..b.examples).map(|i| b.select(&[i]))).collect();
    assert_eq!(rejoined.len(), 12);
    for (i, one) in rejoined.iter().enumerate() {
        assert_eq!(one, &host.select(&[i]), "example {i} kept in order");
    }
    assert_eq!(micro_batches(&host, &groups, 100).len(), 1);
    // a group larger than the limit is one micro-batch; an empty group after it starts none
    let big = GroupRows { offsets: vec![0, 12, 12] };
    assert_eq!(micro_batches(&host, &big, 4).len(), 1);
    assert_eq!(micro_batches(&host.select(&[]), &GroupRows::per_example(0), 4).len(), 1);

    for private in [true, false] {
        let make = || {
            let privacy = if private {
                Privacy::Dp {
                    params: DpSgd { clip_norm: 0.05, noise_multiplier: 0.7, expected_batch: 12.0 },
                    noise: NoiseSource::seeded([9; 32]),
                }
            } else {
                Privacy::NonPrivate
            };
            Trainer::new(&be, w.model(&be, 0).unwrap(), OptimizerKind::sgd(0.5), privacy).unwrap()
        };
        let (mut whole, mut parted) = (make(), make());
        let a = whole.step(&be, &host.upload(&be).unwrap(), &groups).unwrap();
        let uploaded: Vec<_> = parts.iter().map(|(b, g)| (b.upload(&be).unwrap(), g)).collect();
        let refs: Vec<_> = uploaded.iter().map(|(b, g)| (b, *g)).collect();
        assert!(parted.micro_step(&be, &[]).is_err(), "no micro-batches: no step");
        let b = parted.micro_step(&be, &refs).unwrap();
        assert!((a.loss - b.loss).abs() < 1e-6 * a.loss.abs(), "loss {} vs {}", a.loss, b.loss);
        assert_eq!((a.clipped_groups, a.groups), (b.clipped_groups, b.groups));
        if private {
            assert!(a.clipped_groups > 0, "the clip norm clips some groups");
        }
        for (p, q) in whole.model().params().iter().zip(parted.model().params()) {
            let scale = p.value.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-3);
            let diff = p.value.iter().zip(&q.value).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-5 * scale, "{} (private {private}): differs by {diff}", p.name);
        }
        // a second step reuses the sums' buffers
        let b2 = parted.micro_step(&be, &refs).unwrap();
        let a2 = whole.step(&be, &host.upload(&be).unwrap(), &groups).unwrap();
        assert!((a2.loss - b2.loss).abs() < 1e-5 * a2.loss.abs(), "second step loss {} vs {}", a2.loss, b2.loss);
    }
}
