//! The export gate and `medtrain verify` through the binary: a finished DP run is released with a
//! signature the real `ssh-keygen -Y verify` accepts; a changed byte anywhere fails verification naming
//! the file; runs that must not leave (no DP, seeded noise, a tokenizer fitted on private notes, an
//! unfinished run, a run directory changed after the run) are refused with what to do.

mod common;
use common::cli::{bin, config, last_json, node, train};
use std::path::Path;
use std::process::{Command, Output};

/// `medtrain export` on the node of `tmp` (its permits and ledger).
fn export(tmp: &Path, run: &Path, out: &Path, key: &Path) -> Output {
    node(tmp).arg("export").arg(run).arg("--out").arg(out).arg("--key-file").arg(key).output().unwrap()
}

/// `medtrain node key --new`: a node key at `path` (export never makes one).
fn new_key(path: &Path) {
    let o = bin().args(["node", "key", "--new", "--key-file"]).arg(path).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
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
    let e = export(tmp.path(), &run, &rel, &key);
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
    // the config as released: no path of the node (a directory may be named after a patient), no
    // split key (with it the subjects' pseudonyms give who trained and who was held out)
    let config = release["model"]["config_toml"].as_str().unwrap();
    let tmp_name = tmp.path().file_name().unwrap().to_str().unwrap();
    assert!(!config.contains(tmp_name) && config.contains("(withheld: a path on the node)"), "{config}");
    let parsed: toml::Table = toml::from_str(config).unwrap();
    assert!(parsed["model"].is_table() && parsed["privacy"].is_table(), "{config}");
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
    // --out that cannot take the release by a rename (".", a link) or inside the run: refused before
    // anything is written, and no signed release left in a staging directory
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::os::unix::fs::symlink(&empty, tmp.path().join("link")).unwrap();
    for (out, said) in [
        (empty.join("."), "name a new directory"),
        (tmp.path().join("link"), "symbolic link"),
        (run.join("release"), "inside the run directory"),
        (run.join("checkpoint/release"), "inside the run directory"),
        (run.join("releases/v1"), "inside the run directory"),
    ] {
        let e = export(tmp.path(), &run, &out, &key);
        assert!(!e.status.success() && err(&e).contains(said), "{}: {}", out.display(), err(&e));
    }
    for dir in [tmp.path(), &empty, &run] {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
    let v = verify(&rel);
    assert!(v.status.success(), "{}", err(&v));
    // it says which key it trusted: the release's own, which proves it whole, not who made it
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(said.contains("signed by the key SHA256:") && said.contains("not who made it"), "{said}");
    // the accountant and the unit as words, not JSON strings
    assert!(said.contains("(pld accountant, unit subject)"), "{said}");
    // a release file that is a link out of the directory: refused
    let linked = tmp.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    for n in &names {
        std::fs::copy(rel.join(n), linked.join(n)).unwrap();
    }
    let outside = tmp.path().join("outside.safetensors");
    std::fs::rename(linked.join("model.safetensors"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, linked.join("model.safetensors")).unwrap();
    let v = verify(&linked);
    assert!(!v.status.success() && err(&v).contains("not a regular file"), "{}", err(&v));
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
    // a key file that does not exist: refused (a mistyped path signed with a key nobody knew)
    let missing = tmp.path().join("other/key");
    let e = export(tmp.path(), &run, &tmp.path().join("r-missing"), &missing);
    assert!(
        !e.status.success() && err(&e).contains("no node key at") && err(&e).contains("node key --new"),
        "{}",
        err(&e)
    );
    assert!(!missing.exists() && !tmp.path().join("r-missing").exists());
    // another node's key
    new_key(&missing);
    let shown = bin().args(["node", "key", "--json", "--key-file"]).arg(&missing).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(shown["public_key"].as_str().unwrap().starts_with("ssh-ed25519 "), "{shown}");
    assert!(shown["fingerprint"].as_str().unwrap().starts_with("SHA256:"), "{shown}");
    let again = bin().args(["node", "key", "--new", "--key-file"]).arg(&missing).output().unwrap();
    assert!(!again.status.success() && err(&again).contains("a key exists"), "{}", err(&again));
    let other = node(tmp.path())
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
        let e = node(tmp.path())
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
    let again = export(tmp.path(), &run, &rel, &key);
    assert!(!again.status.success() && err(&again).contains("not empty"));
}

#[test]
fn runs_that_must_not_leave_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    new_key(&key);
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
    // no held-out non-members: the membership-inference check could not run, so the run is refused
    // before it spends anything (found by a tester: it spent its budget and reported nothing)
    let cfg = config("lab-mlp", tmp.path(), &[SHORT, ("held_out = 0.2", "held_out = 0.0")]);
    let t = train(&cfg, &tmp.path().join("no-held-out"), &[]);
    assert!(!t.status.success() && err(&t).contains("data.split.held_out"), "{}", err(&t));
    assert!(!tmp.path().join("no-held-out/checkpoint").exists());
    for (i, (run, want)) in cases.iter().enumerate() {
        let e = export(tmp.path(), run, &tmp.path().join(format!("out-{i}")), &key);
        assert!(!e.status.success(), "{} exported", run.display());
        assert!(err(&e).contains(want), "{}: {}", run.display(), err(&e));
        assert!(!tmp.path().join(format!("out-{i}")).exists());
    }
    // a run directory changed after the run: the file named
    let run = run_of("changed", "lab-mlp", &[SHORT], &[]);
    let m = run.join("metrics.json");
    let text = std::fs::read_to_string(&m).unwrap().replace("\"held_out\"", "\"held-out\"");
    std::fs::write(&m, text).unwrap();
    let e = export(tmp.path(), &run, &tmp.path().join("out-changed"), &key);
    assert!(!e.status.success() && err(&e).contains("metrics.json") && err(&e).contains("changed"), "{}", err(&e));
    // ... and sealed again with the new digests: the ledger's record of the seal refuses it
    medtrain::train::seal::seal(&run, None).unwrap();
    // a charged run seals only the checkpoint the ledger recorded last (one replaced while the run
    // evaluated is refused, and nothing is sealed)
    let before = std::fs::read(run.join("seal.json")).unwrap();
    let e = medtrain::train::seal::seal(&run, Some(&"0".repeat(64))).unwrap_err().to_string();
    assert!(e.contains("not the checkpoint this run wrote last"), "{e}");
    assert_eq!(std::fs::read(run.join("seal.json")).unwrap(), before);
    let e = export(tmp.path(), &run, &tmp.path().join("out-resealed"), &key);
    assert!(!e.status.success() && err(&e).contains("seal.json: changed after the run (the ledger"), "{}", err(&e));
    assert!(!tmp.path().join("out-resealed").exists());
    // reproduce says so too (found by a tester: it replayed, "differed" and blamed the CPU)
    let r = node(tmp.path()).arg("reproduce").arg(&run).output().unwrap();
    assert!(!r.status.success() && err(&r).contains("changed after the run (the ledger"), "{}", err(&r));
    // a sealed file replaced by a FIFO: refused at once (opening it would wait for a writer for ever)
    std::fs::remove_file(&m).unwrap();
    assert!(Command::new("mkfifo").arg(&m).status().unwrap().success());
    let e = export(tmp.path(), &run, &tmp.path().join("out-fifo"), &key);
    assert!(!e.status.success() && err(&e).contains("not a regular file"), "{}", err(&e));
    // a DP run resumed with --no-dp: refused (it was rewritten as a non-private run, its reservation
    // never settled); a --run-dir that is a file, or a directory of other files: refused
    let cfg = config("lab-mlp", tmp.path(), &[SHORT]);
    let t = train(&cfg, &cases[3].0, &["--resume", "--no-dp"]);
    assert!(!t.status.success() && err(&t).contains("resume it without --no-dp"), "{}", err(&t));
    let t = train(&cfg, &cfg, &[]);
    assert!(!t.status.success() && err(&t).contains("not a directory"), "{}", err(&t));
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let t = train(&cfg, &foreign, &[]);
    assert!(!t.status.success() && err(&t).contains("not a medtrain run's"), "{}", err(&t));
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    // a limit looser than the permit's (0.6): refused, naming the permit
    let run = run_of("loose", "lab-mlp", &[SHORT], &[]);
    let mut e = common::cli::node(tmp.path());
    let e = e.arg("export").arg(&run).arg("--out").arg(tmp.path().join("out-loose")).arg("--key-file").arg(&key);
    let e = e.args(["--max-attack-auc", "0.9"]).output().unwrap();
    assert!(!e.status.success() && err(&e).contains("looser than the permit's max_attack_auc 0.6"), "{}", err(&e));
    // a key file that is not a regular file: refused before it is opened
    let e = export(tmp.path(), &run, &tmp.path().join("out-zero"), Path::new("/dev/zero"));
    assert!(!e.status.success() && err(&e).contains("not a regular file"), "{}", err(&e));
    // not a run
    let e = export(tmp.path(), tmp.path(), &tmp.path().join("out-none"), &key);
    assert!(!e.status.success() && err(&e).contains("not a medtrain run directory"));
}

#[test]
fn permits_gate_training_and_export_and_the_ledger_counts_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("lab-mlp", tmp.path(), &[SHORT]);
    // no permit on a fresh node: refused before any step, saying what to do
    let fresh = tmp.path().join("fresh-node");
    // the medtrain binary on that node (no permit issued up front, unlike common::cli::node)
    let on_fresh = || {
        let mut c = bin();
        c.env("MEDTRAIN_HOME", &fresh).env_remove("MEDTRAIN_NODE_KEY");
        c
    };
    let budget_rows = || -> serde_json::Value {
        let o = on_fresh().args(["budget", "show", "--project", "p", "--json"]).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let o = on_fresh().arg("train").arg(&cfg).arg("--run-dir").arg(tmp.path().join("r0")).output().unwrap();
    assert!(
        !o.status.success() && err(&o).contains("no valid permit") && err(&o).contains("permit issue"),
        "{}",
        err(&o)
    );
    assert!(!tmp.path().join("r0/checkpoint").exists());
    // an expired permit does not count, and says so
    let o = on_fresh()
        .args(["permit", "issue", "--project", "old", "--purpose", "t", "--dataset", common::cli::fingerprint()])
        .args(["--expires", "2000-01-01", "--epsilon", "5", "--delta", "1e-5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let o = on_fresh().arg("train").arg(&cfg).arg("--run-dir").arg(tmp.path().join("r1")).output().unwrap();
    assert!(!o.status.success() && err(&o).contains("expired"), "{}", err(&o));
    // a day that is not in the calendar, a project that would be a hidden file, a dataset given twice
    let fp = common::cli::fingerprint();
    for (project, expires, datasets, want) in [
        ("q", "2999-02-30", vec![fp], "is not a date"),
        ("..", "2999-01-01", vec![fp], "starting with a letter or digit"),
        ("q", "2999-01-01", vec![fp, fp], "given twice"),
    ] {
        let mut c = on_fresh();
        c.args(["permit", "issue", "--project", project, "--purpose", "t", "--expires", expires]);
        for d in datasets {
            c.args(["--dataset", d]);
        }
        let o = c.args(["--epsilon", "1", "--delta", "1e-5"]).output().unwrap();
        assert!(!o.status.success() && err(&o).contains(want), "{project} {expires}: {}", err(&o));
    }
    // a permit with a budget for one run of epsilon 3 and a small one, not two of 3 (they compose to ~4.4)
    let o = on_fresh()
        .args(["permit", "issue", "--project", "p", "--purpose", "t", "--dataset", common::cli::fingerprint()])
        .args(["--expires", "2999-01-01", "--epsilon", "3.5", "--delta", "1e-5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let run = |name: &str| {
        on_fresh()
            .arg("train")
            .arg(&cfg)
            .arg("--run-dir")
            .arg(tmp.path().join(name))
            .args(["--threads", "2", "--json"])
            .output()
            .unwrap()
    };
    let first = run("a");
    assert!(first.status.success(), "{}", err(&first));
    let second = run("b");
    assert!(!second.status.success() && err(&second).contains("over the budget"), "{}", err(&second));
    let rows = budget_rows();
    let spent = rows[0]["spent"].as_f64().unwrap();
    // the permit issued expired has no budget in the ledger: listed as such beside the others (it
    // failed the whole listing, found by a tester)
    let o = on_fresh().args(["budget", "show", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let old = all.as_array().unwrap().iter().find(|r| r["project"] == "old").expect("the expired permit listed");
    assert!(old["budget"].is_null() && old["expired"] == true, "{all}");
    assert!(all.as_array().unwrap().iter().any(|r| r["project"] == "p" && r["budget"].is_number()), "{all}");
    let o = on_fresh().args(["budget", "show"]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("no budget in the ledger (expired"));
    assert!((spent - last_json(&first)["epsilon"].as_f64().unwrap()).abs() < 0.05, "{rows}");
    assert_eq!(rows[0]["reserved"].as_f64().unwrap(), 0.0);
    // an interrupted run keeps its reservation; permit settle settles it from its checkpoint
    let cfg2 = config(
        "lab-mlp",
        tmp.path(),
        &[("epochs = 20", "steps = 30"), ("target_epsilon = 3.0", "target_epsilon = 0.2")],
    );
    let o = on_fresh()
        .arg("train")
        .arg(&cfg2)
        .arg("--run-dir")
        .arg(tmp.path().join("c"))
        .args(["--stop-after", "5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let rows = budget_rows();
    assert!(rows[0]["reserved"].as_f64().unwrap() > 0.0, "{rows}");
    let o = on_fresh().args(["permit", "settle"]).arg(tmp.path().join("c")).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let rows = budget_rows();
    assert_eq!(rows[0]["reserved"].as_f64().unwrap(), 0.0, "{rows}");
    let settled = rows[0]["spent"].as_f64().unwrap();
    assert!(settled > spent, "{rows}");
    // resumed after its settlement: the whole run is reserved again and settled when it ends (the
    // steps after the settlement were run without any reservation, and never counted)
    let o =
        on_fresh().arg("train").arg(&cfg2).arg("--run-dir").arg(tmp.path().join("c")).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let rows = budget_rows();
    assert_eq!(rows[0]["reserved"].as_f64().unwrap(), 0.0, "{rows}");
    assert!(rows[0]["spent"].as_f64().unwrap() > settled + 1e-3, "{rows}");
    // a tampered permit is not valid
    let list = on_fresh().args(["permit", "list", "--json"]).output().unwrap();
    let l: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let file = l.as_array().unwrap().iter().find(|p| p["permit"]["project"] == "p").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&file).unwrap().replace("epsilon = 3.5", "epsilon = 50.0");
    std::fs::write(&file, text).unwrap();
    let o = on_fresh().args(["permit", "show"]).arg(&file).output().unwrap();
    assert!(!o.status.success() && err(&o).contains("not signed by this node"), "{}", err(&o));
}

/// kill -9 at any point of an export (the release staged and renamed) leaves either no release or a
/// complete one that verifies, the key as it was, no staging
/// left once an export of the same name ends, and the ledger as it was: export spends nothing.
#[test]
fn an_export_killed_at_any_point_leaves_no_half_release_and_the_ledger_unchanged() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("lab-gru", tmp.path(), &[SHORT]);
    let run = tmp.path().join("run");
    let t = train(&cfg, &run, &[]);
    assert!(t.status.success(), "{}", err(&t));
    let budget = || {
        let o = node(tmp.path()).args(["budget", "show", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", err(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = budget();
    let keys = tmp.path().join("keys");
    let key = keys.join("node_ed25519");
    new_key(&key);
    // how long one export takes here, to spread the kills over it
    let timing = tmp.path().join("timing");
    let started = Instant::now();
    let o = export(tmp.path(), &run, &timing, &key);
    assert!(o.status.success(), "{}", err(&o));
    let full = started.elapsed();
    let rel = tmp.path().join("release");
    for i in 0..12u32 {
        let child = node(tmp.path())
            .arg("export")
            .arg(&run)
            .arg("--out")
            .arg(&rel)
            .arg("--key-file")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut child = child;
        std::thread::sleep(full.mul_f64(i as f64 / 10.0) + Duration::from_millis(2 * i as u64));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let _ = child.wait();
        if rel.exists() {
            let v = verify(&rel);
            assert!(v.status.success(), "kill {i}: a release was left that does not verify: {}", err(&v));
            std::fs::remove_dir_all(&rel).unwrap();
        }
    }
    let o = export(tmp.path(), &run, &rel, &key);
    assert!(o.status.success(), "{}", err(&o));
    assert!(verify(&rel).status.success());
    let leftovers = |dir: &Path, name: &str| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!(".{name}.partial-")))
            .count()
    };
    assert_eq!(leftovers(tmp.path(), "release"), 0, "staging left beside the release");
    assert_eq!(leftovers(&keys, "node_ed25519"), 0, "a staged key left");
    assert_eq!(budget(), before, "export changed the ledger");
    // a run directory this node's ledger does not know (another node's, or moved) is refused
    let copy = tmp.path().join("run-elsewhere");
    assert!(Command::new("cp").arg("-a").arg(&run).arg(&copy).status().unwrap().success());
    let o = export(tmp.path(), &copy, &tmp.path().join("release-copy"), &key);
    assert!(!o.status.success() && err(&o).contains("no record of the run"), "{}", err(&o));
}

#[test]
fn categorical_labels_train_under_the_declared_classes_and_the_release_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _) =
        medtrain::data::read(&common::cli::export().join("export"), &medtrain::data::ReadOptions::default()).unwrap();
    // a label a subject, in three categories; one category ("a patient's own") only one subject has
    // (each at an hour after the subject's last lab result: a window the model sees data in)
    let mut last = vec![i64::MIN; d.subjects.names.len()];
    for e in d.events.iter().filter(|e| e.kind == medtrain::data::EventKind::Lab) {
        last[e.subject as usize] = last[e.subject as usize].max(e.time);
    }
    let mut csv = String::from("subject_id,prediction_time,categorical_value\n");
    for (i, s) in d.subjects.names.iter().enumerate() {
        let c = if i == 7 { "rare-category-of-one" } else { ["none", "mild", "severe"][i % 3] };
        let at = if last[i] == i64::MIN {
            "2024-12-31T00:00:00Z".to_string()
        } else {
            medtrain::data::time::format(last[i] + 3600)
        };
        csv.push_str(&format!("{s},{at},{c}\n"));
    }
    let labels = tmp.path().join("labels.csv");
    std::fs::write(&labels, &csv).unwrap();
    let file = format!("file = {:?}", labels.display().to_string());
    // (a label file's prediction time is its data's last: no offset after it)
    let task = "task = \"ed_admission\"\nwindow_hours = 24\noffset_hours = 1";
    let run_with = |classes: &str, head: &str, name: &str| {
        let with = format!("{file}\n{classes}");
        let cfg = config("lab-gru", tmp.path(), &[SHORT, (task, &with), ("type = \"binary\"", head)]);
        (train(&cfg, &tmp.path().join(name), &[]), tmp.path().join(name))
    };
    let multiclass = "type = \"multiclass\"\nclasses = 4";
    // without the declared classes: refused, saying why, printing no category
    let (t, _) = run_with("", multiclass, "run-undeclared");
    assert!(!t.status.success());
    let e = err(&t);
    assert!(e.contains("labels.classes") && e.contains("4 distinct categories") && e.contains("DP guarantee"), "{e}");
    assert!(!e.contains("rare-category") && !e.contains("severe"), "{e}");
    // a category the list does not hold: refused, counted
    let (t, _) = run_with("classes = [\"none\", \"mild\", \"severe\", \"other\"]", multiclass, "run-unlisted");
    let e = err(&t);
    assert!(!t.status.success() && e.contains("1 label(s) of") && !e.contains("rare-category"), "{e}");
    // a head of another class count: refused before the data are prepared
    let declared = "classes = [\"none\", \"mild\", \"severe\", \"rare-category-of-one\", \"unused\"]";
    let (t, run) = run_with(declared, multiclass, "run-head");
    let e = err(&t);
    assert!(!t.status.success() && e.contains("model.head.classes: 4") && e.contains("5 categories"), "{e}");
    assert!(!run.join("data").exists());
    // declared: trained, the classes in run.json and the release, in the declared order (one declared
    // category no label has keeps its index: the indices never depend on the data)
    let (t, run) = run_with(declared, "type = \"multiclass\"\nclasses = 5", "run");
    assert!(t.status.success(), "{}", err(&t));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    let want = serde_json::json!(["none", "mild", "severe", "rare-category-of-one", "unused"]);
    assert_eq!(summary["classes"], want);
    // (the node's key: made by its first permit issue)
    let key = tmp.path().join("node/node_ed25519");
    let rel = tmp.path().join("release");
    let e = export(tmp.path(), &run, &rel, &key);
    assert!(e.status.success(), "{}", err(&e));
    let release: serde_json::Value = serde_json::from_slice(&std::fs::read(rel.join("release.json")).unwrap()).unwrap();
    assert_eq!(release["model"]["classes"], want);
    assert_eq!(release["model"]["head"], "multiclass");
    let weights = medtrain::tensors::TensorFile::read(&rel.join("model.safetensors")).unwrap();
    let head = weights.tensors.iter().find(|(k, _)| k.starts_with("head") && k.ends_with("weight")).unwrap().1;
    assert_eq!(head.shape[0], 5);
    assert!(verify(&rel).status.success());
    // labels.classes with boolean labels: refused
    let cfg = config("lab-gru", tmp.path(), &[SHORT, (task, &format!("{task}\n{declared}"))]);
    let t = train(&cfg, &tmp.path().join("run-task"), &[]);
    assert!(!t.status.success() && err(&t).contains("labels.classes"), "{}", err(&t));
}
