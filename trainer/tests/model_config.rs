//! The `[model]` config: parsing (unknown keys named), validation against the data (errors naming the
//! key and the numbers), and every model it builds — lab transformer (mean, CLS), GRU (last, mean),
//! MLP, own text transformer, pretrained BERT and RoBERTa with frozen groups, fused lab + text — against
//! the brute-force per-patient reference, bitwise across thread counts, with every head's loss.

mod common;
use kernels::{Cpu, GroupRows, NormStrategy, OptimizerKind};
use medtrain::model::config::{DataShape, LabelType, ModelConfig, ModelError};
use medtrain::model::{Head, HostBatch, HostInputs, HostTargets, Model};
use medtrain::privacy::noise::NoiseSource;
use medtrain::train::{DpSgd, Privacy, Trainer};
use std::path::Path;

const T: usize = 5;
const F: usize = 6;
const L: usize = 7;
const VOCAB: usize = 50;

fn hf(dir: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(dir).display().to_string()
}

fn cfg(toml: &str) -> ModelConfig {
    ModelConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

fn shape(label: LabelType) -> DataShape {
    DataShape { series: Some((T, F)), text: Some((VOCAB, L)), label }
}

struct Rng(u64);
impl Rng {
    fn unif(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A batch of what `c` reads, with padding in both masks (the first step and token always kept).
fn batch(c: &ModelConfig, head: Head, b: usize, seed: u64) -> HostBatch {
    let mut rng = Rng(seed);
    let mask = |t: usize, rng: &mut Rng| -> Vec<f32> {
        (0..b * t).map(|i| if i % t == 0 || rng.unif() < 0.7 { 1.0 } else { 0.0 }).collect()
    };
    let x: Vec<f32> = (0..b * T * F).map(|_| rng.unif() * 4.0 - 2.0).collect();
    let ids: Vec<u32> = (0..b * L).map(|_| (rng.unif() * VOCAB as f32) as u32).collect();
    let (inputs, steps, m) = match (c.lab.is_some(), c.text.is_some()) {
        (true, true) => {
            let token_mask = mask(L, &mut rng);
            (HostInputs::Both { x, features: F, ids, tokens: L, token_mask }, T, mask(T, &mut rng))
        }
        (true, false) => (HostInputs::Dense { x, features: F }, T, mask(T, &mut rng)),
        _ => (HostInputs::Tokens(ids), L, mask(L, &mut rng)),
    };
    let targets = match head {
        Head::Binary => HostTargets::Binary((0..b).map(|_| (rng.unif() < 0.5) as u32 as f32).collect()),
        Head::Multiclass(k) => HostTargets::Classes((0..b).map(|_| (rng.unif() * k as f32) as u32).collect()),
        Head::Regression { .. } => HostTargets::Real((0..b).map(|_| rng.unif() * 6.0 - 3.0).collect()),
    };
    HostBatch { examples: b, steps, inputs, mask: m, targets }
}

fn label_for(c: &ModelConfig) -> LabelType {
    match c.head.head() {
        Head::Binary => LabelType::Boolean,
        Head::Multiclass(_) => LabelType::Categorical,
        Head::Regression { .. } => LabelType::Float,
    }
}

fn build(be: &Cpu, c: &ModelConfig) -> Box<dyn Model<Cpu>> {
    Box::new(c.build(be, &shape(label_for(c)), 11).unwrap().net)
}

fn configs() -> Vec<(&'static str, String)> {
    let bert = hf("tiny-bert");
    let roberta = hf("tiny-roberta");
    vec![
        ("lab transformer, mean", "[lab]\nkind = \"transformer\"\nd_model = 8\nheads = 2\nff = 12\n[head]\ntype = \"binary\"".into()),
        (
            "lab transformer, cls, multiclass",
            "[lab]\nkind = \"transformer\"\nd_model = 8\nheads = 2\nff = 12\nlayers = 1\npooling = \"cls\"\n[head]\ntype = \"multiclass\"\nclasses = 3".into(),
        ),
        ("lab GRU, last, MSE", "[lab]\nkind = \"gru\"\nhidden = 6\n[head]\ntype = \"regression\"".into()),
        (
            "lab GRU, mean, Huber",
            "[lab]\nkind = \"gru\"\nhidden = 5\npooling = \"mean\"\n[head]\ntype = \"regression\"\nloss = \"huber\"\nhuber_delta = 0.5".into(),
        ),
        ("lab MLP", "[lab]\nkind = \"mlp\"\nhidden = 9\n[head]\ntype = \"binary\"".into()),
        (
            "text transformer, cls, frozen embeddings",
            "[text]\nkind = \"transformer\"\nd_model = 8\nheads = 4\nff = 8\nlayers = 2\npooling = \"cls\"\nfreeze_embeddings = true\n[head]\ntype = \"multiclass\"\nclasses = 4".into(),
        ),
        (
            "fused lab transformer + text transformer, fusion MLP",
            "[lab]\nkind = \"transformer\"\nd_model = 8\nheads = 2\nff = 12\nlayers = 1\npooling = \"cls\"\n[text]\nkind = \"transformer\"\nd_model = 4\nheads = 2\nff = 8\nlayers = 1\n[fusion]\nhidden = [6]\nactivation = \"tanh\"\n[head]\ntype = \"binary\"".into(),
        ),
        (
            "fused GRU + pretrained BERT, frozen embeddings and first layer",
            format!("[lab]\nkind = \"gru\"\nhidden = 4\n[text]\nkind = \"pretrained\"\npath = \"{bert}\"\npooling = \"mean\"\nfreeze_embeddings = true\nfreeze_layers = 1\n[fusion]\nhidden = [5, 3]\n[head]\ntype = \"regression\"\nloss = \"huber\""),
        ),
        (
            "pretrained RoBERTa, cls",
            format!("[text]\nkind = \"pretrained\"\npath = \"{roberta}\"\n[head]\ntype = \"multiclass\"\nclasses = 3"),
        ),
    ]
}

#[test]
fn every_configured_model_matches_the_brute_force_per_patient_reference() {
    for (what, toml) in configs() {
        let c = cfg(&toml);
        let head = c.head.head();
        for (i, groups) in [GroupRows::per_example(5), GroupRows { offsets: vec![0, 3, 4, 7] }].iter().enumerate() {
            let host = batch(&c, head, groups.examples(), 40 + i as u64);
            for s in [NormStrategy::Ghost, NormStrategy::Materialize, NormStrategy::Auto] {
                eprintln!("{what}, groups {:?}, {s:?}", groups.offsets);
                common::check_against_brute_force(what, &|be| build(be, &c), &host, groups, s);
            }
        }
    }
}

fn run(threads: usize, c: &ModelConfig, groups: &GroupRows) -> Vec<Vec<u32>> {
    let be = Cpu::new(threads).unwrap();
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: groups.groups() as f32 },
        noise: NoiseSource::seeded([5; 32]),
    };
    let mut tr = Trainer::new(&be, build(&be, c), OptimizerKind::adamw(1e-2), privacy).unwrap();
    let b = batch(c, c.head.head(), groups.examples(), 3).upload(&be).unwrap();
    for _ in 0..2 {
        tr.step(&be, &b, groups).unwrap();
    }
    tr.model().params().iter().map(|p| p.value.iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn every_configured_model_trains_bitwise_identically_on_1_and_3_threads() {
    let groups = GroupRows { offsets: vec![0, 1, 4, 6] };
    for (what, toml) in configs() {
        let c = cfg(&toml);
        assert!(run(1, &c, &groups) == run(3, &c, &groups), "{what}: weights differ between 1 and 3 threads");
    }
}

#[test]
fn frozen_groups_keep_their_weights_and_the_rest_trains() {
    let c = cfg(&configs()[7].1);
    let be = Cpu::new(2).unwrap();
    let built = c.build(&be, &shape(LabelType::Float), 11).unwrap();
    assert!(built.trainable < built.total && built.trainable > 0);
    let ck = built.base.as_ref().unwrap();
    assert!(ck.digests.iter().any(|(p, h)| p.ends_with("model.safetensors") && h.len() == 64));
    let before: Vec<(String, bool, Vec<f32>)> =
        built.net.params().iter().map(|p| (p.name.clone(), p.frozen, p.value.clone())).collect();
    let frozen: Vec<&str> = before.iter().filter(|p| p.1).map(|p| p.0.as_str()).collect();
    // the embeddings, their LayerNorm and layer 0, nothing else
    assert!(frozen.iter().all(|n| n.starts_with("bert.embeddings.") || n.starts_with("bert.encoder.layer.0.")));
    assert!(frozen.contains(&"bert.embeddings.word_embeddings.weight"));
    assert!(frozen.contains(&"bert.encoder.layer.0.output.LayerNorm.bias"));
    assert!(!frozen.iter().any(|n| n.contains("layer.1.")));
    let groups = GroupRows::per_example(4);
    let privacy = Privacy::Dp {
        params: DpSgd { clip_norm: 1.0, noise_multiplier: 1.0, expected_batch: 4.0 },
        noise: NoiseSource::seeded([2; 32]),
    };
    let mut tr = Trainer::new(&be, built.net, OptimizerKind::sgd(0.1), privacy).unwrap();
    tr.step(&be, &batch(&c, c.head.head(), 4, 9).upload(&be).unwrap(), &groups).unwrap();
    for (p, (name, frozen, v)) in tr.model().params().iter().zip(&before) {
        assert_eq!(&p.name, name);
        assert_eq!(&p.value == v, *frozen, "{name}: frozen {frozen}, changed {}", &p.value != v);
    }
}

#[test]
fn a_pretrained_encoder_starts_from_the_checkpoint() {
    // the text branch of a text-only model with mean pooling is `medtrain embed`'s encoder: pooled
    // vectors before the head equal Hugging Face's (golden_embed.json), so the head sees them
    let c = cfg(&format!(
        "[text]\nkind = \"pretrained\"\npath = \"{}\"\npooling = \"cls\"\n[head]\ntype = \"binary\"",
        hf("tiny-bert")
    ));
    let be = Cpu::new(1).unwrap();
    let built = c.build(&be, &DataShape { series: None, text: Some((50, 10)), label: LabelType::Boolean }, 1).unwrap();
    let want = medtrain::model::hf::embed(
        &be,
        Path::new(&hf("tiny-bert")),
        "The patient has high blood glucose today.",
        medtrain::model::Pooling::Cls,
    )
    .unwrap();
    // word embeddings loaded: the first row of the table is the checkpoint's
    let ck = medtrain::model::hf::HfCheckpoint::read(Path::new(&hf("tiny-bert"))).unwrap();
    let p = built.net.params().into_iter().find(|p| p.name == "bert.embeddings.word_embeddings.weight").unwrap();
    assert_eq!(p.value, ck.tensors["bert.embeddings.word_embeddings.weight"].2);
    assert_eq!(want.embedding.len(), 16);
}

fn err(toml: &str, data: &DataShape) -> String {
    match ModelConfig::from_toml(toml) {
        Err(e) => e,
        Ok(c) => match c.validate(data) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{toml}"),
        },
    }
}

#[test]
fn bad_configs_name_the_key_and_the_numbers() {
    let d = shape(LabelType::Boolean);
    let cases: Vec<(String, DataShape, &[&str])> = vec![
        (
            "[lab]\nkind = \"transformer\"\nd_model = 100\nheads = 3\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.lab.d_model", "100", "heads = 3"],
        ),
        (
            "[fusion]\nhidden = [8]\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["no encoder", "model.lab", "model.text"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[head]\ntype = \"regression\"".into(),
            d.clone(),
            &["model.head.type", "regression", "float_value or integer_value", "boolean_value"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[head]\ntype = \"binary\"".into(),
            shape(LabelType::Float),
            &["model.head.type", "binary", "boolean_value", "float_value"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[head]\ntype = \"multiclass\"\nclasses = 1".into(),
            shape(LabelType::Categorical),
            &["model.head.classes", "1 classes"],
        ),
        (
            "[lab]\nkind = \"transformer\"\nlayers = 2\nfreeze_layers = 3\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.lab.freeze_layers", "3", "2 layers"],
        ),
        (
            "[lab]\nkind = \"gru\"\npooling = \"cls\"\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.lab.pooling"],
        ),
        (
            "[lab]\nkind = \"transformer\"\npooling = \"last\"\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.lab.pooling"],
        ),
        ("[lab]\nkind = \"gru\"\nhidden = 0\n[head]\ntype = \"binary\"".into(), d.clone(), &["model.lab.hidden", "0"]),
        (
            "[lab]\nkind = \"gru\"\nhidden = 100000000\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.lab.hidden", "100000000"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[fusion]\nhidden = [4, 0]\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["model.fusion.hidden[1]"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[head]\ntype = \"regression\"\nhuber_delta = 2.0".into(),
            shape(LabelType::Float),
            &["model.head.huber_delta", "huber"],
        ),
        (
            "[text]\nkind = \"transformer\"\n[head]\ntype = \"binary\"".into(),
            DataShape { series: Some((T, F)), text: None, label: LabelType::Boolean },
            &["model.text", "no notes"],
        ),
        (
            "[lab]\nkind = \"gru\"\n[head]\ntype = \"binary\"".into(),
            DataShape { series: None, text: Some((VOCAB, L)), label: LabelType::Boolean },
            &["model.lab", "no lab series"],
        ),
        (
            format!(
                "[text]\nkind = \"pretrained\"\npath = \"{}\"\nfreeze_layers = 5\n[head]\ntype = \"binary\"",
                hf("tiny-bert")
            ),
            d.clone(),
            &["model.text.freeze_layers", "5", "2 layers"],
        ),
        (
            format!("[text]\nkind = \"pretrained\"\npath = \"{}\"\n[head]\ntype = \"binary\"", hf("tiny-bert")),
            DataShape { series: None, text: Some((VOCAB, 64)), label: LabelType::Boolean },
            &["model.text.path", "64 tokens", "20 positions"],
        ),
        // unknown keys, at every level, named with the allowed ones
        ("[lab]\nkind = \"gru\"\nhiden = 4\n[head]\ntype = \"binary\"".into(), d.clone(), &["hiden", "hidden"]),
        ("[lab]\nkind = \"gru\"\n[head]\ntype = \"binary\"\nclasses = 2".into(), d.clone(), &["classes"]),
        ("[lab]\nkind = \"gru\"\n[head]\ntype = \"binary\"\n[heads]\nx = 1".into(), d.clone(), &["heads", "fusion"]),
        ("[lab]\nkind = \"lstm\"\n[head]\ntype = \"binary\"".into(), d.clone(), &["lstm", "transformer", "gru"]),
        (
            "[lab]\nkind = \"gru\"\n[fusion]\nactivation = \"swish\"\n[head]\ntype = \"binary\"".into(),
            d.clone(),
            &["swish", "relu"],
        ),
        ("[lab]\nkind = \"gru\"".into(), d.clone(), &["head"]),
    ];
    for (toml, data, want) in cases {
        let e = err(&toml, &data);
        for w in want {
            assert!(e.contains(w), "error for\n{toml}\nlacks '{w}': {e}");
        }
    }
    // a missing checkpoint directory names the file
    let e = err("[text]\nkind = \"pretrained\"\npath = \"/nonexistent/model\"\n[head]\ntype = \"binary\"", &d);
    assert!(e.contains("/nonexistent/model/config.json"), "{e}");
}

#[test]
fn a_config_round_trips_through_serde() {
    for (what, toml) in configs() {
        let c = cfg(&toml);
        let back: ModelConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c, "{what}");
    }
    let e = ModelError::Config { key: "model.lab.heads".into(), msg: "x".into() };
    assert_eq!(e.to_string(), "model.lab.heads: x");
}

#[test]
fn the_footprint_counts_the_parameters_every_configured_model_builds() {
    use medtrain::model::footprint::Shape;
    let be = Cpu::new(1).unwrap();
    for (what, toml) in configs() {
        let c = cfg(&toml);
        let data = shape(label_for(&c));
        let ck = c.validate(&data).unwrap();
        let built = c.build(&be, &data, 1).unwrap();
        let f =
            c.footprint(&Shape { series: data.series, text: data.text, pretrained: ck.as_ref().map(|c| &c.config) });
        assert_eq!(f.params(), built.total as u64, "{what}: parameters");
        assert_eq!(f.trainable(), built.trainable as u64, "{what}: trainable parameters");
        assert!(f.activations_per_example > 0, "{what}");
    }
}

#[test]
fn a_model_that_cannot_fit_names_the_key_to_change() {
    use medtrain::model::footprint::Shape;
    let c = cfg("[lab]\nkind = \"transformer\"\nd_model = 8\nheads = 2\nff = 12\n[head]\ntype = \"binary\"");
    let f = c.footprint(&Shape { series: Some((T, F)), text: None, pretrained: None });
    let fixed = f.step_bytes(2, 0);
    // weights, gradients and two AdamW moments: 4 floats per trainable parameter
    assert_eq!(fixed, 16 * f.params());
    assert!(f.check_fits(2, 100, f.step_bytes(2, 100), "host").is_ok());
    let (key, msg) = f.check_fits(2, 100, fixed - 1, "host").unwrap_err();
    assert_eq!(key, "model.lab.layers", "{msg}");
    assert!(msg.contains("make it smaller"), "{msg}");
    // room for 37 examples' activations: a micro-batch of at most 37
    let limit = f.step_bytes(2, 37) + 5;
    let (key, msg) = f.check_fits(2, 100, limit, "host").unwrap_err();
    assert_eq!(key, "train.micro_batch");
    assert!(msg.contains("at most 37") && msg.contains("100 examples"), "{msg}");
    // SGD without momentum keeps no state: the same model fits in less
    assert_eq!(f.step_bytes(0, 0), 8 * f.params());
    // CLS pooling: the last block computes one query (its attention is 1 x T, not T x T): counted so,
    // else a long note's bound would refuse a model that fits
    let long = |pooling: &str| {
        let c = cfg(&format!(
            "[text]\nkind = \"transformer\"\nd_model = 8\nheads = 8\nff = 8\nlayers = 1\npooling = \"{pooling}\"\n[head]\ntype = \"binary\""
        ));
        c.footprint(&Shape { series: None, text: Some((VOCAB, 4096)), pretrained: None }).activations_per_example
    };
    assert!(long("cls") * 100 < long("mean"), "{} vs {}", long("cls"), long("mean"));
}

#[test]
fn a_checkpoint_config_of_the_largest_sizes_is_refused_not_overflowed() {
    use medtrain::model::footprint::Shape;
    // config.json allows each size up to 2^24: their products pass u64 (a debug build panicked)
    let mut big = medtrain::model::BertConfig::minilm_l6(2);
    big.vocab_size = 1 << 24;
    big.hidden_size = 1 << 24;
    big.intermediate_size = 1 << 24;
    big.num_hidden_layers = 1 << 24;
    big.num_attention_heads = 1 << 24;
    big.max_position_embeddings = 1 << 24;
    let c = cfg(&format!("[text]\nkind = \"pretrained\"\npath = \"{}\"\n[head]\ntype = \"binary\"", hf("tiny-bert")));
    let f = c.footprint(&Shape { series: None, text: Some((VOCAB, 1 << 16)), pretrained: Some(&big) });
    assert_eq!(f.params(), u64::MAX);
    let (key, msg) = f.check_fits(2, 1, 1 << 40, "host").unwrap_err();
    assert_eq!(key, "model.text.path", "{msg}");
}
