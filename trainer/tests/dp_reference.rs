//! One-pass DP-SGD (per-group norms from one backward, then `X^T (c ⊙ dY)`) against the brute-force
//! reference: one backward per group, its explicit gradient, its norm over all parameters, clipped and
//! summed. For every model type (MLP; lab encoder: Linear input, attention, LayerNorm; text encoder:
//! Embedding and positions), groups of one and of several examples, and every norm strategy.

mod common;
use common::{grads, trainer};
use kernels::{Cpu, GroupRows, NormStrategy};
use medtrain::model::{
    Bert, BertConfig, Encoder, EncoderConfig, EncoderInput, HostBatch, HostInputs, HostTargets, Mlp, MlpConfig, Model,
};

struct Rng(u64);
impl Rng {
    fn unif(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn batch(kind: &str, b: usize, t: usize, rng: &mut Rng) -> HostBatch {
    let (inputs, targets) = match kind {
        "text" | "bert" => (
            HostInputs::Tokens((0..b * t).map(|_| (rng.unif() * 11.0) as u32).collect()),
            HostTargets::Classes((0..b).map(|_| (rng.unif() * 3.0) as u32).collect()),
        ),
        _ => (
            HostInputs::Dense { x: (0..b * t * 4).map(|_| rng.unif() * 4.0 - 2.0).collect(), features: 4 },
            HostTargets::Binary((0..b).map(|_| (rng.unif() < 0.5) as u32 as f32).collect()),
        ),
    };
    let mask = (0..b * t).map(|i| if i % t == 0 || rng.unif() < 0.7 { 1.0 } else { 0.0 }).collect();
    HostBatch { examples: b, steps: t, inputs, mask, targets }
}

fn model(kind: &str, be: &Cpu, t: usize) -> Box<dyn Model<Cpu>> {
    match kind {
        "mlp" => Box::new(Mlp::new(be, MlpConfig { inputs: t * 4, hidden: 8, outputs: 1 }, 3).unwrap()),
        "bert" => {
            let cfg = BertConfig {
                family: medtrain::model::Family::Bert,
                position_offset: 0,
                vocab_size: 11,
                hidden_size: 8,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 16,
                max_position_embeddings: 12,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                num_labels: 3,
            };
            Box::new(Bert::new(be, &cfg, 3).unwrap())
        }
        "lab" => Box::new(
            Encoder::new(
                be,
                EncoderConfig { input: EncoderInput::Features(4), d: 8, heads: 2, ff: 16, layers: 2, outputs: 1 },
                3,
            )
            .unwrap(),
        ),
        _ => Box::new(
            Encoder::new(
                be,
                EncoderConfig {
                    input: EncoderInput::Tokens { vocab: 11, max_len: 12 },
                    d: 8,
                    heads: 2,
                    ff: 16,
                    layers: 1,
                    outputs: 3,
                },
                3,
            )
            .unwrap(),
        ),
    }
}

fn check(kind: &str, t: usize, groups: GroupRows, strategy: NormStrategy) {
    let host = batch(kind, groups.examples(), t, &mut Rng(groups.groups() as u64 * 31 + t as u64));
    common::check_against_brute_force(&format!("{kind} t={t}"), &|be| model(kind, be, t), &host, &groups, strategy);
}

fn layouts() -> Vec<GroupRows> {
    vec![GroupRows::per_example(5), GroupRows { offsets: vec![0, 3, 4, 7] }]
}

#[test]
fn mlp_one_pass_clipping_matches_brute_force() {
    for g in layouts() {
        check("mlp", 3, g, NormStrategy::Auto);
    }
}

#[test]
fn lab_encoder_one_pass_clipping_matches_brute_force_with_every_norm_strategy() {
    for g in layouts() {
        for s in [NormStrategy::Ghost, NormStrategy::Materialize, NormStrategy::Auto] {
            check("lab", 6, g.clone(), s);
        }
    }
}

#[test]
fn text_encoder_one_pass_clipping_matches_brute_force_with_every_norm_strategy() {
    for g in layouts() {
        for s in [NormStrategy::Ghost, NormStrategy::Materialize, NormStrategy::Auto] {
            check("text", 12, g.clone(), s);
        }
    }
}

#[test]
fn bert_one_pass_clipping_matches_brute_force_with_every_norm_strategy() {
    // Hugging Face's BertForSequenceClassification: post-LN layers, separate q/k/v, additive mask,
    // word + position + token type embeddings, tanh pooler on the first token
    for g in layouts() {
        for s in [NormStrategy::Ghost, NormStrategy::Materialize, NormStrategy::Auto] {
            check("bert", 12, g.clone(), s);
        }
    }
}

#[test]
fn clipped_group_gradients_never_exceed_the_clip_norm() {
    // a single group clipped to C: the clipped sum's norm is exactly C
    let be = Cpu::new(2).unwrap();
    let host = batch("lab", 4, 6, &mut Rng(9));
    let mut tr = trainer(&be, model("lab", &be, 6));
    let groups = GroupRows::single(4);
    tr.gradients(&be, &host.upload(&be).unwrap(), &groups, Some(1e-3), 1.0).unwrap();
    let n = grads(&tr).iter().flatten().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    assert!((n - 1e-3).abs() < 1e-7, "clipped norm {n}");
}
