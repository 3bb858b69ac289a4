//! `medtrain bench`: one full training step of each workload (forward, backward, per-group clipping,
//! noise, optimizer update), timed as the median over `steps` after 3 warm-up steps. Data is generated
//! once per workload and not timed.

use crate::model::workload::Workload;
use crate::privacy::noise::NoiseSource;
use crate::train::{micro_batches, DpSgd, Privacy, Trainer};
use kernels::{Backend, GroupRows, OptimizerKind, Result};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    NoDp,
    Dp,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::NoDp => "nodp",
            Mode::Dp => "dp",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "nodp" => Ok(Mode::NoDp),
            "dp" => Ok(Mode::Dp),
            other => Err(format!("unknown mode '{other}': expected nodp or dp")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub system: &'static str,
    pub workload: &'static str,
    pub mode: &'static str,
    pub batch: usize,
    pub threads: usize,
    pub device: &'static str,
    pub steps: usize,
    pub ms_per_step: f64,
    pub samples_per_s: f64,
    pub params: usize,
    /// the most examples per forward and backward (`--micro-batch`), when the step is cut
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_batch: Option<usize>,
}

pub const WARMUP_STEPS: usize = 3;

/// Times `steps` full training steps of `workload` in `mode` at `batch` examples, in micro-batches of
/// at most `micro_batch` examples when given.
pub fn run<B: Backend + 'static>(
    be: &B,
    workload: Workload,
    mode: Mode,
    batch: usize,
    micro_batch: Option<usize>,
    steps: usize,
) -> Result<BenchResult> {
    let model = workload.model(be, 0)?;
    let params = model.num_params();
    let privacy = match mode {
        Mode::NoDp => Privacy::NonPrivate,
        Mode::Dp => Privacy::Dp {
            params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: batch as f32 },
            noise: NoiseSource::from_os_entropy().map_err(|e| kernels::KernelError::Device(e.to_string()))?,
        },
    };
    let mut trainer = Trainer::new(be, model, OptimizerKind::sgd(0.05), privacy)?;
    let host = workload.random_batch(batch, 0);
    let groups = GroupRows::per_example(batch);
    let parts = micro_batches(&host, &groups, micro_batch.unwrap_or(batch.max(1)));
    let data = parts.iter().map(|(b, g)| Ok((b.upload(be)?, g))).collect::<Result<Vec<_>>>()?;
    let data: Vec<_> = data.iter().map(|(b, g)| (b, *g)).collect();
    for _ in 0..WARMUP_STEPS {
        trainer.micro_step(be, &data)?;
    }
    be.synchronize()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        trainer.micro_step(be, &data)?;
        be.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    Ok(BenchResult {
        system: "medtrain",
        workload: workload.name(),
        mode: mode.name(),
        batch,
        threads: be.threads(),
        device: be.name(),
        steps: times.len(),
        ms_per_step: (median * 1e5).round() / 100.0,
        samples_per_s: (batch as f64 / median * 10.0).round() / 10.0,
        params,
        micro_batch,
    })
}
