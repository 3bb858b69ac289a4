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
