//! The export gate and `medtrain verify` through the binary: a finished DP run is released with a
//! signature the real `ssh-keygen -Y verify` accepts; a changed byte anywhere fails verification naming
//! the file; runs that must not leave (no DP, seeded noise, a tokenizer fitted on private notes, an
//! unfinished run, a run directory changed after the run) are refused with what to do.

mod common;
use common::cli::{bin, config, last_json, train};
use std::path::Path;
use std::process::Output;

fn export(run: &Path, out: &Path, key: &Path) -> Output {
    bin().arg("export").arg(run).arg("--out").arg(out).arg("--key-file").arg(key).output().unwrap()
}

fn verify(dir: &Path) -> Output {
    bin().arg("verify").arg(dir).output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SHORT: (&str, &str) = ("epochs = 20", "steps = 8");

#[test]
fn a_released_run_verifies_with_medtrain_and_ssh_keygen_and_any_change_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("node/node_ed25519");
    let cfg = config("lab-gru", tmp.path(), &[SHORT]);
    let run = tmp.path().join("run");
    let t = train(&cfg, &run, &[]);
    assert!(t.status.success(), "{}", err(&t));
    let rel = tmp.path().join("release");
    let e = export(&run, &rel, &key);
    assert!(e.status.success(), "{}", err(&e));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let mut names: Vec<String> =
        std::fs::read_dir(&rel).unwrap().map(|f| f.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["model.safetensors", "node.pub", "release.json", "release.json.sig"]);
    let release: serde_json::Value = serde_json::from_slice(&std::fs::read(rel.join("release.json")).unwrap()).unwrap();
    let r = last_json(&t);
    assert_eq!(release["privacy"]["epsilon"], r["epsilon"]);
    assert_eq!(release["privacy"]["unit"], "subject");
    assert!(release["data_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(release["held_out"]["not_covered_by_dp"].is_string());
    // the membership-inference check: under DP on this cohort both attacks are near chance
    let mi = &release["membership_inference"];
    for kind in ["loss_threshold", "calibrated"] {
        let a = mi[kind]["auc"].as_f64().unwrap();
        let (lo, hi) = (mi[kind]["low"].as_f64().unwrap(), mi[kind]["high"].as_f64().unwrap());
        assert!(lo <= a && a <= hi && (0.35..0.65).contains(&a), "{kind}: {a} [{lo}, {hi}]");
    }
    assert!(mi["members"].as_u64().unwrap() >= 10 && mi["non_members"].as_u64().unwrap() >= 10);
    // the weights only, in their layouts: no optimizer state
    let weights = medtrain::tensors::TensorFile::read(&rel.join("model.safetensors")).unwrap();
    assert_eq!(weights.tensors["lab.gru.weight_ih_l0"].shape, vec![3 * 32, 3 * 13]);
    assert!(!weights.tensors.keys().any(|k| k.contains(".m") || k.contains(".v")));
    let v = verify(&rel);
    assert!(v.status.success(), "{}", err(&v));
    // the standard tool, as the README says
    if Path::new("/usr/bin/ssh-keygen").exists() {
        let public = std::fs::read_to_string(rel.join("node.pub")).unwrap();
        let allowed = tmp.path().join("allowed_signers");
        std::fs::write(&allowed, format!("medtrain-node namespaces=\"medtrain-release\" {public}")).unwrap();
        let check = |msg: &Path| {
            std::process::Command::new("ssh-keygen")
                .args(["-Y", "verify", "-f"])
                .arg(&allowed)
                .args(["-I", "medtrain-node", "-n", "medtrain-release", "-s"])
                .arg(rel.join("release.json.sig"))
                .stdin(std::fs::File::open(msg).unwrap())
                .output()
                .unwrap()
        };
        let ok = check(&rel.join("release.json"));
        assert!(ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("Good"), "{ok:?}");
    }
    // one changed byte in any file fails, naming it
    for (file, want) in [
        ("model.safetensors", "model.safetensors"),
        ("release.json", "signature"),
        ("release.json.sig", "release.json.sig"),
    ] {
        let copy = tmp.path().join(format!("tampered-{file}"));
        std::fs::create_dir(&copy).unwrap();
        for n in &names {
            std::fs::copy(rel.join(n), copy.join(n)).unwrap();
        }
        let mut b = std::fs::read(copy.join(file)).unwrap();
        let i = b.len() - 20;
        b[i] ^= 1;
        std::fs::write(copy.join(file), b).unwrap();
        let v = verify(&copy);
        assert!(!v.status.success() && err(&v).contains(want), "{file}: {}", err(&v));
    }
    // another node's key
    let other = bin()
        .args(["export"])
        .arg(&run)
        .arg("--out")
        .arg(tmp.path().join("r2"))
        .arg("--key-file")
        .arg(tmp.path().join("other/key"))
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", err(&other));
    let o = bin().arg("verify").arg(&rel).arg("--key").arg(tmp.path().join("r2/node.pub")).output().unwrap();
    assert!(!o.status.success() && err(&o).contains("signature"), "{}", err(&o));
    // an unlisted file in the release
    std::fs::write(rel.join("extra.bin"), b"x").unwrap();
    let v = verify(&rel);
    assert!(!v.status.success() && err(&v).contains("extra.bin"));
    // a permit-set threshold below the measured AUC refuses the run, naming the attack
    let measured = mi["loss_threshold"]["auc"].as_f64().unwrap().max(mi["calibrated"]["auc"].as_f64().unwrap());
    if measured > 0.5 {
        let t = format!("{}", (0.5 + measured) / 2.0);
        let e = bin()
            .arg("export")
            .arg(&run)
            .arg("--out")
            .arg(tmp.path().join("r3"))
            .arg("--key-file")
            .arg(&key)
            .args(["--max-attack-auc", &t])
            .output()
            .unwrap();
        assert!(!e.status.success() && err(&e).contains("membership inference"), "{}", err(&e));
    }
    // an existing release is not overwritten
    let again = export(&run, &rel, &key);
    assert!(!again.status.success() && err(&again).contains("not empty"));
}

#[test]
fn runs_that_must_not_leave_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let run_of = |name: &str, cfg_name: &str, edits: &[(&str, &str)], extra: &[&str]| {
        let cfg = config(cfg_name, tmp.path(), edits);
        let run = tmp.path().join(name);
        let t = train(&cfg, &run, extra);
        assert!(t.status.code() == Some(0) || t.status.code() == Some(3), "{name}: {}", err(&t));
        run
    };
    let cases = [
        (run_of("nodp", "lab-mlp", &[SHORT], &["--no-dp"]), "without DP"),
        (
            run_of(
                "seeded",
                "lab-mlp",
                &[SHORT, ("max_examples_per_subject = 4", "max_examples_per_subject = 4\nnoise_seed = 3")],
                &[],
            ),
            "noise_seed",
        ),
        (run_of("tok", "notes-transformer", &[SHORT], &[]), "tokenizer"),
        (run_of("unfinished", "lab-mlp", &[SHORT], &["--stop-after", "3"]), "--resume"),
    ];
    for (i, (run, want)) in cases.iter().enumerate() {
        let e = export(run, &tmp.path().join(format!("out-{i}")), &key);
        assert!(!e.status.success(), "{} exported", run.display());
        assert!(err(&e).contains(want), "{}: {}", run.display(), err(&e));
        assert!(!tmp.path().join(format!("out-{i}")).exists());
    }
    // a run directory changed after the run: the file named
    let run = run_of("changed", "lab-mlp", &[SHORT], &[]);
    let m = run.join("metrics.json");
    let text = std::fs::read_to_string(&m).unwrap().replace("\"held_out\"", "\"held-out\"");
    std::fs::write(&m, text).unwrap();
    let e = export(&run, &tmp.path().join("out-changed"), &key);
    assert!(!e.status.success() && err(&e).contains("metrics.json") && err(&e).contains("changed"), "{}", err(&e));
    // not a run
    let e = export(tmp.path(), &tmp.path().join("out-none"), &key);
    assert!(!e.status.success() && err(&e).contains("not a medtrain run directory"));
}
