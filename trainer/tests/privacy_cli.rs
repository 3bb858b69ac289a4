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
    let (code, out, err) = run(&[
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
        "--json",
    ]);
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

    let (code, out, err) = run(&[
        "privacy",
        "noise",
        "--epsilon",
        "2.382",
        "--delta",
        "1e-5",
        "--sample-rate",
        "0.004266666666666667",
        "--steps",
        "14063",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let sigma = v["noise_multiplier"].as_f64().unwrap();
    assert!((sigma - 1.1).abs() < 0.01, "{out}");
    assert!(v["epsilon"].as_f64().unwrap() <= 2.382, "calibration never overshoots: {out}");
}

#[test]
fn bad_privacy_arguments_name_the_flag_and_the_allowed_range() {
    let base = ["privacy", "epsilon", "--noise", "1.0", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"];
    let with = |flag: &str, value: &str| -> Vec<String> {
        let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        let i = v.iter().position(|a| a == flag).unwrap();
        v[i + 1] = value.to_string();
        v
    };
    for (flag, value, expect) in [
        ("--sample-rate", "1.5", "--sample-rate: must be in [1e-10, 1e0], got 1.5"),
        ("--sample-rate", "0", "--sample-rate: must be in [1e-10, 1e0], got 0"),
        ("--noise", "0", "--noise: must be in [1e-10, 1e10], got 0"),
        ("--delta", "1", "--delta: must be in [1e-100, 5e-1], got 1"),
        ("--steps", "0", "--steps: must be in [1, 1000000000000], got 0"),
    ] {
        let args = with(flag, value);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&refs);
        assert_eq!(code, 1, "{flag} {value}");
        assert!(
            err.contains(expect) && err.contains(flag.trim_start_matches("--").split('-').next().unwrap()),
            "{flag}={value}: {err}"
        );
    }
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(["--accountant".into(), "moments".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(&refs);
    assert_eq!(code, 1);
    assert!(err.contains("unknown accountant 'moments': expected pld or rdp"), "{err}");
}

#[test]
fn noise_calibration_stays_on_pld_when_one_probe_does_not_fit_its_grid() {
    // repro-7: one probe of the search (sigma 1) needs more PLD grid points than the accountant holds;
    // the answer used to be RDP's sigma 87.2, which spends 0.915 of the target 1 under PLD
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
    let (code, out, err) = privacy("epsilon", "--noise", &sigma.to_string());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["accountant"], "pld", "{out}");
    assert!(v["epsilon"].as_f64().unwrap() <= 1.0, "{out}");
}

#[test]
fn a_closed_or_full_standard_output_is_no_panic() {
    let args = ["privacy", "epsilon", "--noise", "1.1", "--sample-rate", "0.004", "--steps", "100", "--delta", "1e-5"];
    // a full disk: said, exit 1
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain")).args(args).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to standard output") && !err.contains("internal error"), "{err}");
    // a reader that closed the pipe (`| head -0`): quiet, 141 as SIGPIPE would give (0 when the
    // output fit in the pipe before it closed)
    let mut child = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 141)) && err.is_empty(), "{:?} {err}", o.status);
}

/// Found by a tester: `privacy epsilon` took one phase, so the epsilon of a run resumed under a new plan
/// or with a DP tokenizer's selection before it (release.json's `phases`, `preparation_phases`,
/// `delta_added_by_preparation`) could not be recomputed. `--phase` (repeated) composes them, and
/// `--delta-added` takes what selections add to delta, as the ledger composes a run.
#[test]
fn epsilon_of_several_phases_is_their_composition() {
    use medtrain::privacy::accountant::{self, AccountantKind, Delta, NoiseMultiplier, Phase, SampleRate};
    let eps = |args: &[&str]| -> f64 {
        let (code, out, err) = run(&[&["privacy", "epsilon", "--json", "--delta", "1e-5"], args].concat());
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["epsilon"].as_f64().unwrap()
    };
    // one run cut in two phases of one plan is the run
    let whole = eps(&["--noise", "1.1", "--sample-rate", "0.004266", "--steps", "14063"]);
    let cut = eps(&["--phase", "1.1,0.004266,7000", "--noise", "1.1", "--sample-rate", "0.004266", "--steps", "7063"]);
    assert!((whole - cut).abs() < 1e-6 * whole, "{whole} vs {cut}");
    // a tokenizer's selection, then two plans, at delta less what the selection adds
    let got = eps(&["--phase", "4,1,1", "--phase", "1.0,0.01,600", "--phase", "2.0,0.01,200", "--delta-added", "1e-7"]);
    let p = |s: f64, q: f64, n: u64| Phase {
        noise_multiplier: NoiseMultiplier::new(s).unwrap(),
        sample_rate: SampleRate::new(q).unwrap(),
        steps: n,
    };
    let want = accountant::epsilon(
        AccountantKind::Pld,
        &[p(4.0, 1.0, 1), p(1.0, 0.01, 600), p(2.0, 0.01, 200)],
        Delta::new(1e-5 - 1e-7).unwrap(),
    )
    .epsilon;
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    // a phase written otherwise: refused, naming the flag
    let (code, _, err) = run(&["privacy", "epsilon", "--delta", "1e-5", "--phase", "1.1;0.1;5"]);
    assert!(code != 0 && err.contains("--phase") && err.contains("SIGMA,Q,STEPS"), "{err}");
}
