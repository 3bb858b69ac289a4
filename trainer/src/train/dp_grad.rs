//! The auditor's check: the noise-free clipped gradient sum of one batch, from weights and a batch in
//! safetensors files, so that an independent implementation (Opacus, JAX) can be compared with ours.
//!
//! Loss reduction is `sum`: each example's own loss, each group's gradient is the gradient of the sum of
//! its examples' losses, clipped to `clip` in L2 over all parameters, and the clipped group gradients are
//! summed. Groups come from the optional `groups` tensor (absent: one group per example).

use crate::model::workload::{Workload, LAB_CHANNELS, LAB_STEPS, NOTE_TOKENS};
use crate::model::{HostBatch, HostInputs, HostTargets, Model};
use crate::privacy::noise::NoiseSource;
use crate::tensors::{TensorError, TensorFile};
use crate::train::{Privacy, Trainer};
use kernels::{Backend, GroupRows, KernelError, OptimizerKind};

#[derive(Debug, thiserror::Error)]
pub enum DpGradError {
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("compute: {0}")]
    Kernel(#[from] KernelError),
    #[error("--clip must be a positive finite number, got {0}")]
    Clip(f32),
}

/// Copies every parameter of `model` from `file` (PyTorch names and layouts); unknown names are errors.
pub fn load_weights<B: Backend>(be: &B, model: &mut dyn Model<B>, file: &TensorFile) -> Result<(), DpGradError> {
    let names: Vec<String> = model.params().iter().map(|p| p.name.clone()).collect();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    file.reject_unknown(&known, &format!("this model's parameters are {}", names.join(", ")))?;
    for p in model.params_mut() {
        let v = file.f32(&p.name, &p.shape)?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(file.value_error(&p.name, "contains NaN or infinite values").into());
        }
        p.value = be.upload(v)?;
    }
    Ok(())
}

fn first_dim(file: &TensorFile, name: &str) -> Result<usize, TensorError> {
    let shape = file.shape(name)?;
    shape.first().copied().ok_or_else(|| file.value_error(name, "is a scalar; expected a leading batch dimension"))
}

/// Reads `x`, `mask`, `y` and optional `groups` for `workload`. Returns the batch and each example's group.
pub fn load_batch(file: &TensorFile, workload: Workload) -> Result<(HostBatch, Option<Vec<i64>>), TensorError> {
    file.reject_unknown(&["x", "mask", "y", "groups"], "a batch file holds x, mask, y and optionally groups")?;
    let b = first_dim(file, "x")?;
    if b == 0 {
        return Err(file.value_error("x", "holds no examples (batch dimension 0)"));
    }
    let (inputs, steps) = match workload {
        Workload::NotesEncoder | Workload::NotesBert => {
            let vocab = workload.vocab();
            let shape = file.shape("x")?.to_vec();
            let t = if shape.len() == 2 { shape[1] } else { NOTE_TOKENS };
            if t == 0 || t > NOTE_TOKENS {
                return Err(TensorError::Shape {
                    path: file.path.clone(),
                    name: "x".into(),
                    expected: vec![b, NOTE_TOKENS],
                    got: shape,
                });
            }
            let ids = file.i64("x", &[b, t])?;
            if let Some(pos) = ids.iter().position(|&i| i < 0 || i >= vocab as i64) {
                return Err(file.value_error("x", format!("token id out of range [0, {vocab}) in example {}", pos / t)));
            }
            (HostInputs::Tokens(ids.iter().map(|&i| i as u32).collect()), t)
        }
        Workload::LabMlp => {
            let shape = file.shape("x")?.to_vec();
            let x = if shape.len() == 2 {
                file.f32("x", &[b, LAB_STEPS * LAB_CHANNELS])?
            } else {
                file.f32("x", &[b, LAB_STEPS, LAB_CHANNELS])?
            };
            (HostInputs::Dense { x: x.to_vec(), features: LAB_CHANNELS }, LAB_STEPS)
        }
        Workload::LabTransformer => {
            let shape = file.shape("x")?.to_vec();
            let t = if shape.len() == 3 { shape[1] } else { LAB_STEPS };
            let x = file.f32("x", &[b, t, LAB_CHANNELS])?;
            (HostInputs::Dense { x: x.to_vec(), features: LAB_CHANNELS }, t)
        }
    };
    if let HostInputs::Dense { x, .. } = &inputs {
        if x.iter().any(|v| !v.is_finite()) {
            return Err(file.value_error("x", "contains NaN or infinite values"));
        }
    }
    let mask: Vec<f32> = if workload == Workload::LabMlp && !file.has("mask") {
        vec![1.0; b * steps]
    } else {
        let m = file.u8("mask", &[b, steps])?;
        if m.iter().any(|&v| v > 1) {
            return Err(file.value_error("mask", "values must be 0 (padding) or 1 (keep)"));
        }
        m.iter().map(|&v| v as f32).collect()
    };
    let targets = if workload.is_text() {
        let y = file.i64("y", &[b])?;
        if let Some(i) = y.iter().position(|&c| !(0..2).contains(&c)) {
            return Err(file.value_error("y", format!("class out of range [0, 2) in example {i}")));
        }
        HostTargets::Classes(y.iter().map(|&c| c as u32).collect())
    } else {
        let y = if file.shape("y")?.len() == 2 { file.f32("y", &[b, 1])? } else { file.f32("y", &[b])? };
        // binary cross-entropy's targets are probabilities
        if let Some(i) = y.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(file.value_error("y", format!("a label outside [0, 1] (or not a number) in example {i}")));
        }
        HostTargets::Binary(y.to_vec())
    };
    let groups = if file.has("groups") { Some(file.i64("groups", &[b])?.to_vec()) } else { None };
    Ok((HostBatch { examples: b, steps, inputs, mask, targets }, groups))
}

/// Orders examples so that each group's examples are contiguous (groups by first appearance, examples
/// in file order within a group), and returns that order with the group layout.
pub fn group_order(groups: Option<&[i64]>, examples: usize) -> (Vec<usize>, GroupRows) {
    let Some(groups) = groups else {
        return ((0..examples).collect(), GroupRows::per_example(examples));
    };
    let mut first_seen: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, &g) in groups.iter().enumerate() {
        let slot = *first_seen.entry(g).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[slot].push(i);
    }
    let mut offsets = vec![0];
    let mut order = Vec::with_capacity(examples);
    for m in members {
        order.extend(m);
        offsets.push(order.len());
    }
    (order, GroupRows { offsets })
}

/// The clipped gradient sum, as (name, shape, values) in the model's parameter order.
pub fn clipped_gradient_sum<B: Backend + 'static>(
    be: &B,
    workload: Workload,
    weights: &TensorFile,
    batch_file: &TensorFile,
    clip: f32,
) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, DpGradError> {
    if !(clip > 0.0 && clip.is_finite()) {
        return Err(DpGradError::Clip(clip));
    }
    let mut model = workload.model(be, 0)?;
    load_weights(be, model.as_mut(), weights)?;
    let (batch, groups) = load_batch(batch_file, workload)?;
    let (order, layout) = group_order(groups.as_deref(), batch.examples);
    let batch = batch.select(&order).upload(be)?;
    // the optimizer and noise are never used: `gradients` stops before them
    let mut trainer = Trainer::new(
        be,
        model,
        OptimizerKind::sgd(0.0),
        Privacy::Dp {
            params: crate::train::DpSgd { clip_norm: clip, noise_multiplier: 0.0, expected_batch: 1.0 },
            noise: NoiseSource::seeded([0; 32]),
        },
    )?;
    trainer.gradients(be, &batch, &layout, Some(clip), 1.0)?;
    let params = trainer.model().params();
    let grads = params.iter().map(|p| Ok((p.name.clone(), p.shape.clone(), be.download(&p.grad)?)));
    grads.collect::<Result<_, KernelError>>().map_err(DpGradError::from)
}
