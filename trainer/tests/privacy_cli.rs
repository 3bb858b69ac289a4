//! `medtrain privacy epsilon|noise` as a real process: JSON fields, the reference value, bad input.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn epsilon_and_noise_print_the_documented_json() {
    let (code, out, err) = privacy("epsilon", "--noise", &sigma.to_string());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant"] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(v["accountant"], "pld");
    assert!((v["epsilon"].as_f64().unwrap() - 2.382).abs() < 0.024, "{out}");
    assert_eq!(v["steps"], 14063);

    let (code, out, _) = run(&[
        "privacy",
        "epsilon",
        "--noise",
        "1.1",
        "--sample-rate",
        "0.004266666666666667",
        "--steps",
        "14063",
        "--delta",
        "1e-5",
        "--accountant",
        "rdp",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["accountant"], "rdp");
    assert!((v["epsilon"].as_f64().unwrap() - 2.5967).abs() < 1e-3);

    // `privacy CMD FLAG VALUE` at the tester's delta, sample rate and steps
    let privacy = |cmd: &str, flag: &str, value: &str| {
        let rest = ["--delta", "1e-5", "--sample-rate", "0.1523809523809524", "--steps", "20000", "--json"];
        run(&[&["privacy", cmd, flag, value][..], &rest[..]].concat())
    };
    let (code, out, err) = privacy("noise", "--epsilon", "1");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["accountant"], "pld", "{out}");
    assert!(v.get("fallback").is_none_or(|f| f.is_null()), "{out}");
    assert!(!err.contains("PLD accountant not used"), "{err}");
    let sigma = v["noise_multiplier"].as_f64().unwrap();
    assert!(sigma < 87.0, "{out}");
    assert!(v["epsilon"].as_f64().unwrap() <= 1.0, "calibration never overshoots: {out}");
    // the run at that sigma, accounted as a run is, meets the target with PLD
    let (code, out, err) = run(&[
        "privacy",
        "epsilon",
        "--noise",
        &sigma.to_string(),
        "--delta",
        "1e-5",
        "--sample-rate",
        "0.1523809523809524",
        "--steps",
        "20000",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["accountant"], "pld", "{out}");
    assert!(v["epsilon"].as_f64().unwrap() <= 1.0, "{out}");
}
