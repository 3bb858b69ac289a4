//! `medtrain demo`: the main job end to end through the real binary.

use std::process::Command;

#[test]
fn demo_trains_with_dp_to_the_target_epsilon_and_learns() {
    let keep = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["demo", "--subjects", "400", "--epochs", "20", "--epsilon", "3", "--threads", "2", "--json", "--keep"])
        .arg(keep.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| r[k].as_f64().unwrap();
    assert!(f("epsilon") <= 3.0 && f("epsilon") > 2.9, "epsilon {}", f("epsilon"));
    assert_eq!(r["accountant"], "pld");
    assert_eq!(r["blocking_findings"], false);
    // the cohort's signal is learnable with and without DP (about 0.72 for both at this size; the noise
    // comes from OS entropy, so the bound leaves room)
    assert!(f("auc_dp") > 0.62, "DP AUC {}", f("auc_dp"));
    assert!(f("auc_non_private") > 0.62, "non-private AUC {}", f("auc_non_private"));
    assert!(f("noise_multiplier") > 0.5);
    assert!(keep.path().join("export/Observation.ndjson").is_file());
    // bad arguments are refused with the flag named
    let bad = Command::new(env!("CARGO_BIN_EXE_medtrain")).args(["demo", "--subjects", "10"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--subjects"));
}
