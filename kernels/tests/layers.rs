//! Every layer and composition through the one layer contract (`common::check_layer`): input and
//! parameter gradients against finite differences, per-group norms and clipped sums against brute
//! force, on every backend the build has (`backend_tests!`).

mod common;
use common::drive::HostBatch;
use common::{check_layer, dot, fd_check, Rng};
use kernels::nn::{
    boxed, post_ln_block, pre_ln_block, Act, Concat, Embeddings, FirstRow, Frozen, GradReduce, Ids, Layer, LayerNorm,
    Linear, MaskedMeanPool, Param, PrependRow, Queries, Residual, SelfAttention, Sequential, Step,
};
use kernels::{Activation, Backend, KernelError, MaskFill, NormStrategy, Result};

const TOL: f64 = 2e-3;

/// `examples` examples of `t` rows of `width` floats, a key mask with padding (the last example all
/// masked when `all_masked`), and token ids below `vocab`.
fn batch(seed: u64, examples: usize, t: usize, width: usize, vocab: usize, all_masked: bool) -> HostBatch {
    let mut rng = Rng::new(seed);
    let mut mask: Vec<f32> =
        (0..examples * t).map(|i| if i % t == 0 || rng.below(4) != 0 { 1.0 } else { 0.0 }).collect();
    if all_masked {
        mask[(examples - 1) * t..].iter_mut().for_each(|m| *m = 0.0);
    }
    HostBatch {
        examples,
        x: rng.vec(examples * t * width, 1.0),
        per_example: t,
        mask: Some(mask),
        ids: Some(((0..examples * t).map(|_| rng.below(vocab) as u32).collect(), t)),
    }
}

fn linear_rows(be: &impl Backend) {
    check_layer(
        be,
        "linear (one row per example)",
        |be| boxed(Linear::new(be, "l", 5, 4).unwrap()),
        &batch(1, 5, 1, 5, 1, false),
        true,
        TOL,
    );
}

fn linear_sequence(be: &impl Backend) {
    check_layer(
        be,
        "linear (3 rows per example)",
        |be| boxed(Linear::new(be, "l", 4, 6).unwrap()),
        &batch(2, 4, 3, 4, 1, false),
        true,
        TOL,
    );
}

fn activations(be: &impl Backend) {
    for f in [Activation::Relu, Activation::Gelu, Activation::Sigmoid, Activation::Tanh] {
        let mut b = batch(3, 4, 2, 6, 1, false);
        // away from ReLU's kink at 0
        b.x.iter_mut().for_each(|v| *v = if v.abs() < 0.05 { *v + 0.1 } else { *v * 3.0 });
        check_layer(be, f.name(), |_| boxed(Act::new(f.name(), f)), &b, true, TOL);
    }
}

fn layer_norm(be: &impl Backend) {
    for eps in [1e-5f32, 1e-12] {
        let make = move |be: &_| boxed(LayerNorm::with_eps(be, "ln", 7, eps).unwrap());
        check_layer(be, &format!("layer norm eps {eps:e}"), make, &batch(4, 4, 3, 7, 1, false), true, TOL);
    }
}

fn attention_fused(be: &impl Backend) {
    let make = |be: &_| boxed(SelfAttention::new(be, "att", 8, 2).unwrap());
    check_layer(be, "attention (fused qkv, -inf mask)", make, &batch(5, 4, 5, 8, 1, true), true, TOL);
}

fn attention_separate_hf(be: &impl Backend) {
    let make = |be: &_| {
        boxed(
            SelfAttention::separate(be, "att", 8, 2, ["att.q", "att.k", "att.v"], "att.o", MaskFill::Add(f32::MIN))
                .unwrap(),
        )
    };
    // no fully masked example: its scores rounded away by f32::MIN have zero finite differences,
    // while autograd (Hugging Face's and ours) passes the gradient through the addition
    check_layer(
        be,
        "attention (separate q/k/v, additive f32::MIN mask)",
        make,
        &batch(6, 4, 5, 8, 1, false),
        true,
        TOL,
    );
}

fn pre_ln(be: &impl Backend) {
    let make = |be: &_| boxed(pre_ln_block(be, "blocks.0", 8, 2, 12, Queries::All).unwrap());
    check_layer(be, "pre-LN block", make, &batch(7, 4, 4, 8, 1, false), true, TOL);
}

fn post_ln(be: &impl Backend) {
    let make =
        |be: &_| boxed(post_ln_block(be, "layer.0", 8, 2, 12, 1e-12, MaskFill::Add(f32::MIN), Queries::All).unwrap());
    check_layer(be, "post-LN block", make, &batch(8, 4, 4, 8, 1, false), true, TOL);
}

/// Attention and blocks whose only query is each example's first token (one row per example out):
/// the layer contract, and the same values and gradients as the full layer's first rows.
fn first_query_layers(be: &impl Backend) {
    let hf = MaskFill::Add(f32::MIN);
    let att_fused = |q| move |be: &_| boxed(SelfAttention::new(be, "att", 8, 2).unwrap().with_queries(q));
    let att_separate = |q| {
        move |be: &_| {
            let att = SelfAttention::separate(be, "att", 8, 2, ["att.q", "att.k", "att.v"], "att.o", hf).unwrap();
            boxed(att.with_queries(q))
        }
    };
    let pre = |q| move |be: &_| boxed(pre_ln_block(be, "blocks.0", 8, 2, 12, q).unwrap());
    let post = |q| move |be: &_| boxed(post_ln_block(be, "layer.0", 8, 2, 12, 1e-12, hf, q).unwrap());
    // the -inf fill gets an all-masked example (its first row attends to nothing); the additive one
    // not (see attention_separate_hf)
    check_layer(
        be,
        "first-query attention (fused)",
        att_fused(Queries::First),
        &batch(31, 4, 5, 8, 1, true),
        true,
        TOL,
    );
    let b = batch(32, 4, 5, 8, 1, false);
    check_layer(be, "first-query attention (separate)", att_separate(Queries::First), &b, true, TOL);
    check_layer(be, "first-query pre-LN block", pre(Queries::First), &batch(33, 4, 4, 8, 1, false), true, TOL);
    check_layer(be, "first-query post-LN block", post(Queries::First), &batch(34, 4, 4, 8, 1, false), true, TOL);

    // against the full layer followed by its first rows, same weights, same output gradient
    fn compare<B: Backend>(be: &B, what: &str, first: Box<dyn Layer<B>>, full: Box<dyn Layer<B>>, batch: &HostBatch) {
        let mut full = Sequential::new("full", vec![full, boxed(FirstRow::new("first", 8))]).unwrap();
        let mut first = Sequential::new("first", vec![first]).unwrap();
        common::drive::randomize(be, &mut full, &mut Rng::new(35), 0.5);
        for (i, v) in common::drive::values(be, &full).iter().enumerate() {
            common::drive::set_value(be, &mut first, i, v);
        }
        let (mut da, mut db) = (common::drive::Driver::new(be), common::drive::Driver::new(be));
        let ya = da.forward(be, &mut first, batch, true).unwrap();
        let yb = db.forward(be, &mut full, batch, true).unwrap();
        assert_eq!(ya.len(), batch.examples * 8, "{what}: one row per example");
        common::assert_close(&format!("{what}: output"), &ya, &yb, 1e-5, 1e-6);
        let r = Rng::new(36).vec(ya.len(), 1.0);
        let dxa = da.backward(be, &mut first, &r).unwrap().unwrap();
        let dxb = db.backward(be, &mut full, &r).unwrap().unwrap();
        common::assert_close(&format!("{what}: input gradient"), &dxa, &dxb, 1e-4, 1e-6);
        let layout = kernels::GroupRows::per_example(batch.examples);
        for st in [NormStrategy::Ghost, NormStrategy::Materialize] {
            let na = da.norms(be, &mut first, &layout, st).unwrap();
            let nb = db.norms(be, &mut full, &layout, st).unwrap();
            common::assert_close(&format!("{what}: norms {st:?}"), &na, &nb, 1e-4, 1e-7);
        }
        let ga = da.param_grads(be, &mut first, &layout, None).unwrap();
        let gb = db.param_grads(be, &mut full, &layout, None).unwrap();
        for (a, b) in ga.iter().zip(&gb) {
            common::assert_close(&format!("{what}: parameter gradient"), a, b, 1e-4, 1e-6);
        }
    }
    let b = batch(37, 5, 6, 8, 1, true);
    compare(be, "fused attention", att_fused(Queries::First)(be), att_fused(Queries::All)(be), &b);
    let b = batch(38, 5, 6, 8, 1, false);
    compare(be, "separate attention", att_separate(Queries::First)(be), att_separate(Queries::All)(be), &b);
    compare(be, "pre-LN block", pre(Queries::First)(be), pre(Queries::All)(be), &b);
    compare(be, "post-LN block", post(Queries::First)(be), post(Queries::All)(be), &b);
    // a step after one of another length: the fused projection's gradient rows that do not query
    // are zeroed, not left from the step before (a resize leaves the contents unspecified)
    let run = |before: Option<&HostBatch>| {
        let mut layer = att_fused(Queries::First)(be);
        common::drive::randomize(be, layer.as_mut(), &mut Rng::new(39), 0.5);
        let mut d = common::drive::Driver::new(be);
        if let Some(b) = before {
            d.forward(be, layer.as_mut(), b, true).unwrap();
            d.backward(be, layer.as_mut(), &vec![-3.0; b.examples * 8]).unwrap();
        }
        d.forward(be, layer.as_mut(), &batch(40, 3, 4, 8, 1, false), true).unwrap();
        let dx = d.backward(be, layer.as_mut(), &[1.0; 24]).unwrap().unwrap();
        (dx, d.param_grads(be, layer.as_mut(), &kernels::GroupRows::single(3), None).unwrap())
    };
    let (once, again) = (run(None), run(Some(&batch(41, 3, 7, 8, 1, false))));
    assert_eq!(once, again);
}

fn embeddings(be: &impl Backend) {
    let make = |be: &_| {
        boxed(
            Embeddings::new(
                be,
                "emb",
                6,
                &[("word", 9, Ids::Tokens), ("pos", 5, Ids::Positions), ("type", 2, Ids::Constant(1))],
            )
            .unwrap(),
        )
    };
    check_layer(be, "embeddings", make, &batch(9, 5, 4, 0, 9, false), false, TOL);
}

/// A lab series' encoder front: Linear, a zero row prepended (the `[CLS]` slot), learned positions
/// added to the rows, then the first row (CLS pooling) or, after a GRU, the last row (its last state).
fn series_positions_and_row_pools(be: &impl Backend) {
    let cls = |be: &_| {
        let layers = vec![
            boxed(Linear::new(be, "embed", 5, 4).unwrap()),
            boxed(PrependRow::new("cls", 4)),
            boxed(Embeddings::added(be, "pos", 4, &[("pos", 6, Ids::Positions)]).unwrap()),
            boxed(Act::new("act", Activation::Tanh)),
            boxed(FirstRow::new("pool", 4)),
        ];
        boxed(Sequential::new("net", layers).unwrap())
    };
    check_layer(be, "prepended row, added positions, first row", cls, &batch(16, 4, 5, 5, 1, false), true, TOL);
    let last = |be: &_| {
        let layers = vec![
            boxed(Embeddings::added(be, "pos", 5, &[("pos", 4, Ids::Positions)]).unwrap()),
            boxed(kernels::nn::Gru::new(be, "gru", 5, 3).unwrap()),
            boxed(FirstRow::last("pool", 3)),
        ];
        boxed(Sequential::new("net", layers).unwrap())
    };
    check_layer(be, "added positions, GRU, last row", last, &batch(17, 3, 4, 5, 1, false), true, TOL);
    // more steps than positions: the table and both counts named
    let mut l = Embeddings::added(be, "pos", 5, &[("pos", 3, Ids::Positions)]).unwrap();
    let mut d = common::drive::Driver::new(be);
    let e = d.forward(be, &mut l, &batch(18, 2, 4, 5, 1, false), false).unwrap_err().to_string();
    assert!(e.contains("pos.weight") && e.contains("at most 3 positions") && e.contains("4 steps"), "{e}");
    assert!(Embeddings::added(be, "pos", 5, &[("tok", 3, Ids::Tokens)]).is_err());
}

/// A frozen layer: gradients flow through it, its parameters get no norm and no gradient, and the
/// norms of a model with it frozen plus those with everything else frozen are the unfrozen norms.
fn frozen_layers(be: &impl Backend) {
    let make = |be: &_, freeze: [bool; 2]| {
        let lin = |name: &str, i, o| boxed(Linear::new(be, name, i, o).unwrap());
        let maybe = |l: Box<dyn Layer<_>>, f: bool| if f { boxed(Frozen::new(l)) } else { l };
        let layers = vec![
            maybe(lin("l0", 5, 4), freeze[0]),
            boxed(Act::new("act", Activation::Tanh)),
            maybe(lin("l1", 4, 2), freeze[1]),
        ];
        Sequential::new("net", layers).unwrap()
    };
    let b = batch(19, 5, 1, 5, 1, false);
    let layout = kernels::GroupRows { offsets: vec![0, 2, 3, 5] };
    let mut rng = Rng::new(3);
    let (mut all, mut first, mut second) = (make(be, [false, false]), make(be, [true, false]), make(be, [false, true]));
    common::drive::randomize(be, &mut all, &mut rng, 0.5);
    let v = common::drive::values(be, &all);
    for net in [&mut first, &mut second] {
        v.iter().enumerate().for_each(|(i, v)| common::drive::set_value(be, net, i, v));
    }
    let mut frozen = Vec::new();
    first.visit(&mut |p| frozen.push(p.frozen));
    assert_eq!(frozen, [true, true, false, false]);
    assert!(kernels::nn::trains(&first) && !kernels::nn::trains(&Frozen::new(boxed(make(be, [false, false])))));
    let dy = rng.vec(5 * 2, 1.0);
    let run = |net: &mut Sequential<_>, track| {
        let mut d = common::drive::Driver::new(be);
        d.forward(be, net, &b, track).unwrap();
        let dx = d.backward(be, net, &dy).unwrap();
        let n = d.norms(be, net, &layout, NormStrategy::Auto).unwrap();
        let g = d.param_grads(be, net, &layout, None).unwrap();
        (dx, n, g)
    };
    let (dx_all, n_all, g_all) = run(&mut all, true);
    let (dx_first, n_first, g_first) = run(&mut first, true);
    let (_, n_second, g_second) = run(&mut second, true);
    common::assert_close("input gradient through a frozen layer", &dx_first.unwrap(), &dx_all.unwrap(), 1e-6, 1e-7);
    let sum: Vec<f32> = n_first.iter().zip(&n_second).map(|(a, b)| a + b).collect();
    common::assert_close("frozen + rest = all", &sum, &n_all, 1e-5, 1e-7);
    assert!(g_first[..2].iter().flatten().all(|&g| g == 0.0), "a frozen parameter got a gradient");
    common::assert_close("trainable gradients", &g_first[2..].concat(), &g_all[2..].concat(), 1e-6, 1e-7);
    assert!(g_second[2..].iter().flatten().all(|&g| g == 0.0));
    // the step's input needs no gradient: the frozen first layer's backward is skipped entirely, and
    // the trainable one's gradient is the same
    let (_, _, g_skip) = run(&mut first, false);
    common::assert_close("skipped frozen backward", &g_skip[2..].concat(), &g_all[2..].concat(), 1e-6, 1e-7);
}

fn pool(be: &impl Backend) {
    let make = |_: &_| boxed(MaskedMeanPool::new("pool", 5));
    check_layer(be, "masked mean pool", make, &batch(10, 4, 4, 5, 1, true), true, TOL);
}

fn gru(be: &impl Backend) {
    let make = |be: &_| boxed(kernels::nn::Gru::new(be, "gru", 5, 4).unwrap());
    check_layer(be, "GRU", make, &batch(12, 4, 5, 5, 1, false), true, TOL);
    // one step, and a GRU feeding pooling and a head (its output gradient then has zero rows)
    check_layer(be, "GRU (one step)", make, &batch(13, 3, 1, 5, 1, false), true, TOL);
    let pooled = |be: &_| {
        boxed(
            Sequential::new(
                "net",
                vec![make(be), boxed(MaskedMeanPool::new("pool", 4)), boxed(Linear::new(be, "head", 4, 2).unwrap())],
            )
            .unwrap(),
        )
    };
    check_layer(be, "GRU, pool, head", pooled, &batch(14, 4, 6, 5, 1, true), true, TOL);
}

fn residual_and_concat(be: &impl Backend) {
    let make = |be: &_| {
        let branch = Sequential::new(
            "r",
            vec![boxed(Linear::new(be, "r.0", 6, 6).unwrap()), boxed(Act::new("r.1", Activation::Tanh))],
        )
        .unwrap();
        let a = Sequential::new(
            "a",
            vec![boxed(Residual::new("res", boxed(branch))), boxed(MaskedMeanPool::new("a.pool", 6))],
        )
        .unwrap();
        let b = Sequential::new(
            "b",
            vec![boxed(Linear::new(be, "b.0", 6, 3).unwrap()), boxed(MaskedMeanPool::new("b.pool", 3))],
        )
        .unwrap();
        let cat = Concat::new("cat", boxed(a), boxed(b));
        boxed(Sequential::new("net", vec![boxed(cat), boxed(Linear::new(be, "head", 9, 2).unwrap())]).unwrap())
    };
    check_layer(be, "residual, concat of two pooled branches, head", make, &batch(11, 4, 3, 6, 1, false), true, TOL);
    // a residual whose branch ends in a residual: the gradient storage they share must chain
    let nested = |be: &_| {
        let inner = Residual::new("inner", boxed(Linear::new(be, "inner.l", 5, 5).unwrap()));
        let branch =
            Sequential::new("branch", vec![boxed(Act::new("branch.act", Activation::Tanh)), boxed(inner)]).unwrap();
        boxed(Residual::new("outer", boxed(branch)))
    };
    check_layer(be, "nested residuals", nested, &batch(15, 3, 2, 5, 1, false), true, TOL);
    // an empty batch (Poisson sampling gives them) through concatenation and a head: no rows, no error
    let mut net = make(be);
    let mut d = common::drive::Driver::new(be);
    let empty = HostBatch { examples: 0, x: vec![], per_example: 3, mask: Some(vec![]), ids: None };
    assert!(d.forward(be, net.as_mut(), &empty, true).unwrap().is_empty());
    assert!(d.backward(be, net.as_mut(), &[]).unwrap().unwrap().is_empty());
}

backend_tests!(
    linear_one_row_per_example => crate::linear_rows,
    linear_rows_per_example => crate::linear_sequence,
    activation_layers => crate::activations,
    layer_norm_with_its_eps => crate::layer_norm,
    attention_with_fused_qkv => crate::attention_fused,
    attention_with_separate_qkv_and_additive_mask => crate::attention_separate_hf,
    pre_ln_encoder_block => crate::pre_ln,
    post_ln_encoder_block => crate::post_ln,
    first_query_attention_and_blocks => crate::first_query_layers,
    embedding_tables => crate::embeddings,
    masked_mean_pooling => crate::pool,
    residual_concat_and_head => crate::residual_and_concat,
    gru_over_time => crate::gru,
    series_positions_cls_and_last_row => crate::series_positions_and_row_pools,
    frozen_layers_pass_gradients_and_have_no_norms => crate::frozen_layers,
);

/// A layer that cannot give exact per-group norms (a stand-in for batch statistics).
struct BatchStatistic(Linear<kernels::Cpu>);

impl Layer<kernels::Cpu> for BatchStatistic {
    fn name(&self) -> &str {
        "net.batch_stat"
    }
    fn forward(&mut self, s: &mut Step<kernels::Cpu>, x: kernels::nn::Slot) -> Result<kernels::nn::Slot> {
        self.0.forward(s, x)
    }
    fn backward(&mut self, s: &mut Step<kernels::Cpu>, acc: bool) -> Result<()> {
        self.0.backward(s, acc)
    }
    fn add_group_sq_norms(
        &mut self,
        _: &Step<kernels::Cpu>,
        _: &mut Vec<f32>,
        _: &kernels::GroupRows,
        _: NormStrategy,
    ) -> Result<()> {
        Err(KernelError::Layer { layer: "net.batch_stat".into(), msg: "no per-group norm".into() })
    }
    fn param_grads(&mut self, s: &Step<kernels::Cpu>, r: &GradReduce<kernels::Cpu>) -> Result<()> {
        self.0.param_grads(s, r)
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<kernels::Cpu>)) {
        self.0.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<kernels::Cpu>)) {
        self.0.visit_mut(f)
    }
    fn check_private(&self) -> Result<()> {
        Err(KernelError::Layer { layer: self.name().into(), msg: "has no exact per-group gradient norm".into() })
    }
}

#[test]
fn a_layer_without_exact_group_norms_is_refused_by_name() {
    let be = kernels::Cpu::new(1).unwrap();
    let net = Sequential::new(
        "net",
        vec![
            boxed(Linear::new(&be, "net.0", 3, 3).unwrap()),
            boxed(BatchStatistic(Linear::new(&be, "net.1", 3, 3).unwrap())),
        ],
    )
    .unwrap();
    let err = net.check_private().unwrap_err().to_string();
    assert!(err.contains("net.batch_stat"), "{err}");
    assert!(Sequential::new("net", vec![boxed(Linear::new(&be, "net.0", 3, 3).unwrap())])
        .unwrap()
        .check_private()
        .is_ok());
}

#[test]
fn a_wrong_input_width_names_the_layer_and_both_shapes() {
    let be = kernels::Cpu::new(1).unwrap();
    let mut l = Linear::new(&be, "blocks.0.ff1", 4, 2).unwrap();
    let mut d = common::drive::Driver::new(&be);
    let b = HostBatch { examples: 3, x: vec![0.0; 3 * 5], per_example: 1, ..Default::default() };
    let err = d.forward(&be, &mut l, &b, false).unwrap_err().to_string();
    assert!(err.contains("blocks.0.ff1") && err.contains("[3, 4]") && err.contains("[3, 5]"), "{err}");
}

#[test]
fn parameters_are_visited_under_their_module_paths() {
    let be = kernels::Cpu::new(1).unwrap();
    let blk =
        post_ln_block(&be, "bert.encoder.layer.0", 8, 2, 12, 1e-12, MaskFill::Add(f32::MIN), Queries::All).unwrap();
    let mut names = vec![];
    blk.visit(&mut |p| names.push(p.name.clone()));
    let p = |s: &str| format!("bert.encoder.layer.0.{s}");
    let want: Vec<String> = [
        "attention.self.query.weight",
        "attention.self.query.bias",
        "attention.self.key.weight",
        "attention.self.key.bias",
        "attention.self.value.weight",
        "attention.self.value.bias",
        "attention.output.dense.weight",
        "attention.output.dense.bias",
        "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias",
        "intermediate.dense.weight",
        "intermediate.dense.bias",
        "output.dense.weight",
        "output.dense.bias",
        "output.LayerNorm.weight",
        "output.LayerNorm.bias",
    ]
    .iter()
    .map(|s| p(s))
    .collect();
    assert_eq!(names, want);
}

fn gelu_is_the_exact_erf_form(be: &impl Backend) {
    let x: Vec<f32> = (-40..=40).map(|i| i as f32 / 8.0).collect();
    let mut y = be.zeros(x.len()).unwrap();
    be.activation_forward(Activation::Gelu, &mut y, &be.upload(&x).unwrap()).unwrap();
    let y = be.download(&y).unwrap();
    // PyTorch's F.gelu (approximate='none') at a few points
    let want =
        [(-5.0f32, -1.4333e-06f32), (-1.0, -0.158_655_26), (0.5, 0.345_731_4), (1.0, 0.841_344_7), (2.0, 1.954_5)];
    for (xv, yv) in want {
        let i = x.iter().position(|&v| v == xv).unwrap();
        assert!((y[i] - yv).abs() < 2e-6 + 1e-5 * yv.abs(), "gelu({xv}) = {}, want {yv}", y[i]);
    }
}

fn additive_mask_of_an_all_masked_query_spreads_weight_like_hugging_face(be: &impl Backend) {
    // Hugging Face adds f32::MIN to masked scores: a fully masked example attends uniformly, where
    // the -inf fill gives zeros
    let (b, h, t) = (1, 1, 3);
    let scores = [0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0, 1.0, 1.0, 1.0];
    let softmax = |mask: &[f32], fill: MaskFill| -> Result<Vec<f32>> {
        let mut att = be.upload(&scores)?;
        be.masked_softmax_forward(&mut att, &be.upload(mask)?, b, h, t, t, 1.0, fill)?;
        be.download(&att)
    };
    let none = [0.0f32; 3];
    let hf = softmax(&none, MaskFill::Add(f32::MIN)).unwrap();
    hf.iter().for_each(|&v| assert!((v - 1.0 / 3.0).abs() < 1e-6, "{hf:?}"));
    assert!(softmax(&none, MaskFill::NegInf).unwrap().iter().all(|&v| v == 0.0));
    let keep = [1.0f32, 0.0, 1.0];
    let (hf2, inf2) = (softmax(&keep, MaskFill::Add(f32::MIN)).unwrap(), softmax(&keep, MaskFill::NegInf).unwrap());
    common::assert_close("one masked key", &hf2, &inf2, 1e-6, 1e-7);
    assert!(softmax(&keep, MaskFill::Add(f32::NEG_INFINITY)).is_err());
}

fn losses_backward_match_finite_differences(be: &impl Backend) {
    let mut rng = Rng::new(17);
    let up = |v: &[f32]| be.upload(v).unwrap();
    // (losses, dlogits) of BCE with logits, or of cross-entropy over k classes
    let bce = |z: &[f32], y: &[f32]| {
        let (mut l, mut d) = (be.zeros(z.len()).unwrap(), be.zeros(z.len()).unwrap());
        be.bce_with_logits(&mut l, &mut d, &up(z), &up(y), 1.0).unwrap();
        (be.download(&l).unwrap(), be.download(&d).unwrap())
    };
    let ce = |z: &[f32], classes: &[u32], k: usize| {
        let (mut l, mut d) = (be.zeros(classes.len()).unwrap(), be.zeros(z.len()).unwrap());
        be.cross_entropy(&mut l, &mut d, &up(z), &be.upload_ids(classes).unwrap(), k, 1.0).unwrap();
        (be.download(&l).unwrap(), be.download(&d).unwrap())
    };
    let sum = |l: Vec<f32>| l.iter().map(|&v| v as f64).sum::<f64>();
    let z = rng.vec(6, 3.0);
    let y = [1.0, 0.0, 1.0, 0.0, 0.3, 1.0];
    fd_check("bce", &z, &bce(&z, &y).1, TOL, |zp| sum(bce(zp, &y).0));
    let (b, k) = (4, 3);
    let z = rng.vec(b * k, 3.0);
    let classes = [0u32, 2, 1, 2];
    fd_check("cross_entropy", &z, &ce(&z, &classes, k).1, TOL, |zp| sum(ce(zp, &classes, k).0));
    // pinned values: BCE(0, 1) = ln 2; CE of uniform logits = ln k
    assert!((bce(&[0.0], &[1.0]).0[0] - std::f32::consts::LN_2).abs() < 1e-6);
    assert!((ce(&[0.0; 3], &[1], 3).0[0] - 3f32.ln()).abs() < 1e-6);
    // regression: squared error and Huber (both branches: residuals inside and beyond delta = 1)
    let reg = |p: &[f32], y: &[f32], huber: Option<f32>| {
        let (mut l, mut d) = (be.zeros(p.len()).unwrap(), be.zeros(p.len()).unwrap());
        be.regression_loss(&mut l, &mut d, &up(p), &up(y), huber, 1.0).unwrap();
        (be.download(&l).unwrap(), be.download(&d).unwrap())
    };
    let p = [0.3f32, -2.0, 1.5, 4.0, -0.2];
    let y = [0.0f32, 0.5, 1.4, -1.0, 0.7];
    for huber in [None, Some(1.0)] {
        fd_check("regression", &p, &reg(&p, &y, huber).1, TOL, |pp| sum(reg(pp, &y, huber).0));
    }
    // pinned: MSE (2 - 0)^2 = 4; Huber(delta 1) of residual 3 = 1 * (3 - 0.5) = 2.5, of 0.5 = 0.125
    assert_eq!(reg(&[2.0], &[0.0], None).0[0], 4.0);
    assert_eq!(reg(&[3.0, 0.5], &[0.0, 0.0], Some(1.0)).0, vec![2.5, 0.125]);
    let (mut l, mut d) = (be.zeros(1).unwrap(), be.zeros(1).unwrap());
    assert!(be.regression_loss(&mut l, &mut d, &up(&[1.0]), &up(&[0.0]), Some(0.0), 1.0).is_err());
    let _ = dot(&[0.0], &[0.0]);
}

backend_tests!(
    gelu_exact_erf => crate::gelu_is_the_exact_erf_form,
    additive_mask_fill => crate::additive_mask_of_an_all_masked_query_spreads_weight_like_hugging_face,
    losses_finite_differences => crate::losses_backward_match_finite_differences,
    gru_pytorch_equations => crate::gru_follows_pytorch_gates_and_names,
);

fn gru_follows_pytorch_gates_and_names(be: &impl Backend) {
    // an independent f64 evaluation of nn.GRU's equations (gate order r, z, n; b_hn inside r * (...))
    let (b, t, i, h) = (2, 3, 3, 2);
    let mut g = kernels::nn::Gru::new(be, "gru", i, h).unwrap();
    let mut rng = Rng::new(40);
    common::drive::randomize(be, &mut g, &mut rng, 0.8);
    let mut names = vec![];
    g.visit(&mut |p| names.push(p.name.clone()));
    assert_eq!(names, ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0"]);
    let dl = |v: &_| be.download(v).unwrap();
    let (wi, wh, bi, bh) = (dl(&g.weight_ih.value), dl(&g.weight_hh.value), dl(&g.bias_ih.value), dl(&g.bias_hh.value));
    let x = rng.vec(b * t * i, 1.0);
    let mut d = common::drive::Driver::new(be);
    let got = d
        .forward(be, &mut g, &HostBatch { examples: b, x: x.clone(), per_example: t, ..Default::default() }, false)
        .unwrap();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut want = vec![];
    for e in 0..b {
        let mut hs = vec![0.0f64; h];
        for s in 0..t {
            let xr = &x[(e * t + s) * i..(e * t + s + 1) * i];
            let lin = |w: &[f32], bias: &[f32], v: &[f64], row: usize, n: usize| {
                bias[row] as f64 + (0..n).map(|c| w[row * n + c] as f64 * v[c]).sum::<f64>()
            };
            let xv: Vec<f64> = xr.iter().map(|&v| v as f64).collect();
            let mut next = vec![0.0; h];
            for j in 0..h {
                let r = sig(lin(&wi, &bi, &xv, j, i) + lin(&wh, &bh, &hs, j, h));
                let z = sig(lin(&wi, &bi, &xv, h + j, i) + lin(&wh, &bh, &hs, h + j, h));
                let n = (lin(&wi, &bi, &xv, 2 * h + j, i) + r * lin(&wh, &bh, &hs, 2 * h + j, h)).tanh();
                next[j] = (1.0 - z) * n + z * hs[j];
            }
            hs = next;
            want.extend(hs.iter().map(|&v| v as f32));
        }
    }
    common::assert_close("gru states", &got, &want, 1e-5, 1e-6);
}

#[test]
fn a_layer_step_gives_the_same_bits_on_1_and_3_threads() {
    // forward, backward, group norms (both kept and recomputed forms) and clipped sums of a pre-LN
    // block and a GRU, bit for bit across thread counts
    let run = |threads: usize| -> Vec<Vec<u32>> {
        let be = kernels::Cpu::new(threads).unwrap();
        let mut out = vec![];
        let layers: Vec<Box<dyn Layer<kernels::Cpu>>> = vec![
            boxed(pre_ln_block(&be, "blocks.0", 16, 4, 32, Queries::All).unwrap()),
            boxed(kernels::nn::Gru::new(&be, "gru", 16, 8).unwrap()),
        ];
        for (k, mut layer) in layers.into_iter().enumerate() {
            let mut rng = Rng::new(50 + k as u64);
            common::drive::randomize(&be, layer.as_mut(), &mut rng, 0.5);
            let b = batch(60 + k as u64, 6, 7, 16, 1, true);
            let mut d = common::drive::Driver::new(&be);
            let y = d.forward(&be, layer.as_mut(), &b, true).unwrap();
            let r = rng.vec(y.len(), 1.0);
            let dx = d.backward(&be, layer.as_mut(), &r).unwrap().unwrap();
            let layout = kernels::GroupRows { offsets: vec![0, 1, 2, 3, 4, 5, 6] };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            out.push(bits(&y));
            out.push(bits(&dx));
            for st in [NormStrategy::Auto, NormStrategy::Ghost, NormStrategy::Materialize] {
                out.push(bits(&d.norms(&be, layer.as_mut(), &layout, st).unwrap()));
                let f: Vec<f32> = (0..6).map(|g| 0.3 + 0.1 * g as f32).collect();
                for g in d.param_grads(&be, layer.as_mut(), &layout, Some(&f)).unwrap() {
                    out.push(bits(&g));
                }
            }
        }
        out
    };
    assert!(run(1) == run(3), "a layer step differs between 1 and 3 threads");
}
