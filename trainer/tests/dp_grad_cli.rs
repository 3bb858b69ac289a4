//! `medtrain dp-grad` as a real process against golden values from an independent implementation
//! (PyTorch, brute force per group: benches/peer/make_dp_grad_golden.py), and its errors on bad input.

use kernels::Cpu;
use medtrain::model::workload::Workload;
use safetensors::tensor::{Dtype, TensorView};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MASK: u64 = u64::MAX;

fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3) & MASK;
    }
    h
}

fn splitmix(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The generator of make_dp_grad_golden.py: k/1000 for k in [-1000, 1000].
fn hashed(name: &str, n: usize) -> Vec<f64> {
    let s = fnv1a(name);
    (0..n).map(|i| ((splitmix(s ^ i as u64) >> 11) % 2001) as f64 / 1000.0 - 1.0).collect()
}

fn hashed_int(name: &str, n: usize, modulo: u64) -> Vec<u64> {
    let s = fnv1a(name);
    (0..n).map(|i| (splitmix(s ^ i as u64) >> 11) % modulo).collect()
}

fn param_values(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let (scale, offset) = if name.contains(".ln") || name.starts_with("ln.") || name.contains("LayerNorm") {
        (0.1, if name.ends_with("weight") { 1.0 } else { 0.0 })
    } else if name == "pos.weight" || (name == "embed.weight" && shape[0] == 8000) {
        (1.0, 0.0)
    } else if shape.len() == 2 {
        (1.0 / (shape[1] as f64).sqrt(), 0.0)
    } else {
        (0.1, 0.0)
    };
    // python: float32(float32(v * scale) + offset), v = k/1000 exactly as python computes it
    let s = fnv1a(name);
    (0..n)
        .map(|i| {
            let k = ((splitmix(s ^ i as u64) >> 11) % 2001) as i64 - 1000;
            let v = k as f64 / 1000.0;
            ((v * scale) as f32 as f64 + offset) as f32
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write(path: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn write_weights(path: &Path, w: Workload) {
    let be = Cpu::new(1).unwrap();
    let model = w.model(&be, 0).unwrap();
    let tensors = model
        .params()
        .iter()
        .map(|p| (p.name.as_str(), Dtype::F32, p.shape.clone(), f32_bytes(&param_values(&p.name, &p.shape))))
        .map(|(n, d, s, b)| (Box::leak(n.to_string().into_boxed_str()) as &str, d, s, b))
        .collect();
    write(path, tensors);
}

fn write_batch(path: &Path, case: &str, w: Workload, b: usize, groups: Option<&[i64]>) {
    let t = if w.is_text() { 128 } else { 48 };
    let mut tensors = vec![];
    if w.is_text() {
        let x: Vec<i64> =
            hashed_int(&format!("{case}/x"), b * t, w.vocab() as u64).into_iter().map(|v| v as i64).collect();
        tensors.push(("x", Dtype::I64, vec![b, t], i64_bytes(&x)));
        let y: Vec<i64> = hashed_int(&format!("{case}/y"), b, 2).into_iter().map(|v| v as i64).collect();
        tensors.push(("y", Dtype::I64, vec![b], i64_bytes(&y)));
    } else {
        let x: Vec<f32> = hashed(&format!("{case}/x"), b * t * 64).into_iter().map(|v| v as f32).collect();
        tensors.push(("x", Dtype::F32, vec![b, t, 64], f32_bytes(&x)));
        let y: Vec<f32> = hashed_int(&format!("{case}/y"), b, 2).into_iter().map(|v| v as f32).collect();
        tensors.push(("y", Dtype::F32, vec![b], f32_bytes(&y)));
    }
    let keep = hashed_int(&format!("{case}/mask"), b * t, 10);
    let mask: Vec<u8> =
        keep.iter().enumerate().map(|(i, &k)| (w == Workload::LabMlp || k != 0 || i % t == 0) as u8).collect();
    tensors.push(("mask", Dtype::U8, vec![b, t], mask));
    if let Some(g) = groups {
        tensors.push(("groups", Dtype::I64, vec![b], i64_bytes(g)));
    }
    write(path, tensors);
}

fn medtrain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
}

fn dp_grad(
    dir: &Path,
    workload: &str,
    weights: &Path,
    batch: &Path,
    clip: f64,
    backend: &str,
) -> (std::process::Output, PathBuf) {
    let out = dir.join(format!("{workload}-{backend}-grad.safetensors"));
    let output = medtrain()
        .args(["dp-grad", "--workload", workload, "--threads", "2", "--clip", &clip.to_string()])
        .args(["--backend", backend])
        .arg("--weights")
        .arg(weights)
        .arg("--batch")
        .arg(batch)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    (output, out)
}

#[test]
fn dp_grad_matches_pytorch_brute_force_golden_values() {
    check_golden("cpu");
}

/// The same cases on the GPU (MEDTRAIN_TEST_CUDA=1): against the PyTorch golden values, and against
/// the CPU's output within 1e-4 of each tensor's norm.
#[test]
fn dp_grad_on_cuda_matches_the_golden_values_and_the_cpu() {
    if std::env::var("MEDTRAIN_TEST_CUDA").map_or(true, |v| v != "1") {
        eprintln!("skipped: set MEDTRAIN_TEST_CUDA=1 to run dp-grad on a GPU");
        return;
    }
    check_golden("cuda");
}

fn read_grads(path: &Path) -> Vec<(String, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f64>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check_golden(backend: &str) {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/dp_grad.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let workload = case["workload"].as_str().unwrap();
        let w: Workload = workload.parse().unwrap();
        let b = case["batch"].as_u64().unwrap() as usize;
        let groups: Option<Vec<i64>> =
            case["groups"].as_array().map(|g| g.iter().map(|v| v.as_i64().unwrap()).collect());
        let weights = dir.path().join(format!("{name}-weights.safetensors"));
        let batch = dir.path().join(format!("{name}-batch.safetensors"));
        write_weights(&weights, w);
        write_batch(&batch, name, w, b, groups.as_deref());
        let clip = case["clip"].as_f64().unwrap();
        let (output, out) = dp_grad(dir.path(), workload, &weights, &batch, clip, backend);
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        if backend != "cpu" {
            let (o, cpu_out) = dp_grad(dir.path(), workload, &weights, &batch, clip, "cpu");
            assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
            let (a, b) = (read_grads(&out), read_grads(&cpu_out));
            assert_eq!(a.len(), b.len(), "{name}: tensor count");
            for ((na, ga), (nb, gb)) in a.iter().zip(&b) {
                assert_eq!(na, nb);
                let l2 = gb.iter().map(|v| v * v).sum::<f64>().sqrt();
                let worst = ga.iter().zip(gb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(worst <= 1e-4 * l2 + 1e-7, "{name}: {na}: {backend} differs from cpu by {worst} (L2 {l2})");
            }
        }
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for p in case["params"].as_array().unwrap() {
            let pname = p["name"].as_str().unwrap();
            let view = st.tensor(pname).unwrap_or_else(|_| panic!("{name}: output lacks {pname}"));
            let shape: Vec<usize> =
                p["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(view.shape(), shape.as_slice(), "{name}: {pname} shape");
            let g: Vec<f64> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
            let l2 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let want_l2 = p["l2"].as_f64().unwrap();
            // f32 against float64: relative 1e-4 of the tensor's norm
            let tol = 1e-4 * want_l2 + 1e-7;
            assert!((l2 - want_l2).abs() <= tol, "{name}: {pname} L2 {l2} vs {want_l2}");
            let sum: f64 = g.iter().sum();
            let want_sum = p["sum"].as_f64().unwrap();
            assert!((sum - want_sum).abs() <= tol * (g.len() as f64).sqrt(), "{name}: {pname} sum {sum} vs {want_sum}");
            for s in p["samples"].as_array().unwrap() {
                let i = s[0].as_u64().unwrap() as usize;
                let want = s[1].as_f64().unwrap();
                assert!((g[i] - want).abs() <= tol, "{name}: {pname}[{i}] {} vs {want}", g[i]);
            }
        }
    }
}

fn stderr_of(args: &[&str]) -> (i32, String) {
    let o = medtrain().args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn dp_grad_never_replaces_its_inputs_or_what_is_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    write_weights(&weights, Workload::LabMlp);
    let batch = dir.path().join("b.safetensors");
    write_batch(&batch, "plain", Workload::LabMlp, 2, None);
    let before = std::fs::read(&weights).unwrap();
    let run = |out: &Path| {
        let o = medtrain()
            .args(["dp-grad", "--workload", "lab-mlp", "--clip", "1", "--weights"])
            .arg(&weights)
            .arg("--batch")
            .arg(&batch)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (code, err) = run(&weights);
    assert!(code == Some(1) && err.contains("the same file as --weights"), "{err}");
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (code, err) = run(&fifo);
    assert!(code == Some(1) && err.contains("not a regular file"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let (code, err) = run(dir.path());
    assert!(code == Some(1) && err.contains("not a regular file"), "{err}");
}

#[test]
fn dp_grad_reports_bad_input_by_tensor_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    write_weights(&weights, Workload::LabMlp);
    let p = |n: &str| dir.path().join(n).to_string_lossy().to_string();
    let run = |batch: &str, weights: &str| {
        stderr_of(&[
            "dp-grad",
            "--workload",
            "lab-mlp",
            "--clip",
            "1",
            "--weights",
            weights,
            "--batch",
            batch,
            "--out",
            &p("o.safetensors"),
        ])
    };
    let x = f32_bytes(&vec![0.5; 2 * 48 * 64]);
    let y = f32_bytes(&[1.0, 0.0]);

    // a binary label that is not a probability, and an empty batch
    let bad_y = f32_bytes(&[987654.25, 0.0]);
    write(
        &dir.path().join("bad_y.safetensors"),
        vec![("x", Dtype::F32, vec![2, 48, 64], x.clone()), ("y", Dtype::F32, vec![2], bad_y)],
    );
    let (code, err) = run(&p("bad_y.safetensors"), &p("w.safetensors"));
    assert!(code == 1 && err.contains("outside [0, 1]") && !err.contains("987654"), "{err}");
    write(
        &dir.path().join("empty.safetensors"),
        vec![("x", Dtype::F32, vec![0, 48, 64], vec![]), ("y", Dtype::F32, vec![0], vec![])],
    );
    let (code, err) = run(&p("empty.safetensors"), &p("w.safetensors"));
    assert!(code == 1 && err.contains("no examples"), "{err}");

    // a missing tensor
    write(&dir.path().join("no_y.safetensors"), vec![("x", Dtype::F32, vec![2, 48, 64], x.clone())]);
    let (code, err) = run(&p("no_y.safetensors"), &p("w.safetensors"));
    assert_eq!(code, 1);
    assert!(err.contains("missing tensor 'y'") && err.contains("no_y.safetensors"), "{err}");

    // a wrong shape names both shapes
    write(
        &dir.path().join("bad_shape.safetensors"),
        vec![("x", Dtype::F32, vec![2, 48, 64], x.clone()), ("y", Dtype::F32, vec![3], f32_bytes(&[1.0, 0.0, 1.0]))],
    );
    let (_, err) = run(&p("bad_shape.safetensors"), &p("w.safetensors"));
    assert!(err.contains("'y' has shape [3], expected [2]"), "{err}");

    // a wrong dtype names both dtypes
    write(
        &dir.path().join("bad_dtype.safetensors"),
        vec![("x", Dtype::F32, vec![2, 48, 64], x.clone()), ("y", Dtype::I64, vec![2], i64_bytes(&[1, 0]))],
    );
    let (_, err) = run(&p("bad_dtype.safetensors"), &p("w.safetensors"));
    assert!(err.contains("'y' has dtype I64, expected F32"), "{err}");

    // an unexpected tensor (a misspelled name) is refused, not ignored
    write(
        &dir.path().join("typo.safetensors"),
        vec![
            ("x", Dtype::F32, vec![2, 48, 64], x.clone()),
            ("y", Dtype::F32, vec![2], y.clone()),
            ("group", Dtype::I64, vec![2], i64_bytes(&[0, 1])),
        ],
    );
    let (_, err) = run(&p("typo.safetensors"), &p("w.safetensors"));
    assert!(err.contains("unexpected tensor(s) [\"group\"]"), "{err}");

    // weights of another model: the first mismatching parameter is named with both shapes
    let other = dir.path().join("other.safetensors");
    write_weights(&other, Workload::LabTransformer);
    write(
        &dir.path().join("ok.safetensors"),
        vec![("x", Dtype::F32, vec![2, 48, 64], x.clone()), ("y", Dtype::F32, vec![2], y.clone())],
    );
    let (_, err) = run(&p("ok.safetensors"), &other.to_string_lossy());
    assert!(err.contains("unexpected tensor(s)") && err.contains("net.0.weight"), "{err}");

    // NaN in x: refused without printing values
    let mut xs = vec![0.5f32; 2 * 48 * 64];
    xs[100] = f32::NAN;
    write(
        &dir.path().join("nan.safetensors"),
        vec![("x", Dtype::F32, vec![2, 48, 64], f32_bytes(&xs)), ("y", Dtype::F32, vec![2], y.clone())],
    );
    let (_, err) = run(&p("nan.safetensors"), &p("w.safetensors"));
    assert!(err.contains("'x': contains NaN or infinite values"), "{err}");

    // not a safetensors file at all
    std::fs::write(dir.path().join("junk.safetensors"), b"not a tensor file").unwrap();
    let (code, err) = run(&p("junk.safetensors"), &p("w.safetensors"));
    assert_eq!(code, 1);
    assert!(err.contains("not a valid safetensors file"), "{err}");

    // an unknown workload lists the allowed values; a bad clip is refused
    let (code, err) =
        stderr_of(&["dp-grad", "--workload", "lab-rnn", "--clip", "1", "--weights", "a", "--batch", "b", "--out", "c"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown workload 'lab-rnn'") && err.contains("lab-mlp, lab-transformer, notes-encoder"),
        "{err}"
    );
    let (_, err) = run(&p("ok.safetensors"), &p("w.safetensors"));
    assert!(err.is_empty(), "a valid call prints nothing: {err}");
    let (_, err) = stderr_of(&[
        "dp-grad",
        "--workload",
        "lab-mlp",
        "--clip=-1",
        "--weights",
        &p("w.safetensors"),
        "--batch",
        &p("ok.safetensors"),
        "--out",
        &p("o.safetensors"),
    ]);
    assert!(err.contains("--clip must be a positive finite number"), "{err}");
}

#[test]
fn dp_grad_without_groups_equals_one_group_per_example() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    write_weights(&weights, Workload::LabTransformer);
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    write_batch(&a, "same", Workload::LabTransformer, 3, None);
    write_batch(&b, "same", Workload::LabTransformer, 3, Some(&[10, 20, 30]));
    let (oa, ga) = dp_grad(dir.path(), "lab-transformer", &weights, &a, 0.5, "cpu");
    let gb = dir.path().join("b-grad.safetensors");
    std::fs::rename(&ga, dir.path().join("a-grad.safetensors")).unwrap();
    let (ob, gb2) = dp_grad(dir.path(), "lab-transformer", &weights, &b, 0.5, "cpu");
    std::fs::rename(&gb2, &gb).unwrap();
    assert!(oa.status.success() && ob.status.success());
    assert_eq!(std::fs::read(dir.path().join("a-grad.safetensors")).unwrap(), std::fs::read(&gb).unwrap());
}
