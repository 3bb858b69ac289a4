//! The accountants on inputs that used to panic, run for minutes or answer infinity: each case ends
//! quickly with a number (PLD, or RDP with the reason in `fallback`) or an error naming the flag.

use medtrain::privacy::accountant::{self, pld, AccountantKind, Delta, Phase};
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain")).arg("privacy").args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn noise_1e_minus_8_falls_back_to_rdp_instead_of_a_capacity_overflow() {
    let (code, out, err) =
        run(&["epsilon", "--noise", "1e-8", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let v = json(&out);
    assert_eq!(v["accountant"], "rdp");
    assert!(v["fallback"].as_str().unwrap().contains("grid points"), "{out}");
    assert!(v["epsilon"].as_f64().unwrap() > 100.0, "almost no noise: a huge epsilon, {out}");
    // the library says why, without allocating
    let phase = Phase::new(1e-8, 0.01, 100).unwrap();
    let e = pld::epsilon(&[phase], Delta::new(1e-5).unwrap()).unwrap_err();
    assert!(matches!(e, pld::PldError::TooLarge { .. }), "{e:?}");
}

#[test]
fn a_billion_steps_fall_back_to_rdp_at_once_in_epsilon_and_in_calibration() {
    let (code, out, err) = run(&[
        "epsilon",
        "--noise",
        "1.0",
        "--sample-rate",
        "0.01",
        "--steps",
        "1000000000",
        "--delta",
        "1e-5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["accountant"], "rdp");
    assert!(v["fallback"].is_string(), "{out}");
    let (code, out, err) = run(&[
        "noise",
        "--epsilon",
        "8",
        "--sample-rate",
        "0.001",
        "--steps",
        "1000000000",
        "--delta",
        "1e-5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["accountant"], "rdp");
    assert!(v["fallback"].is_string(), "{out}");
    assert!(v["epsilon"].as_f64().unwrap() <= 8.0, "{out}");
    // beyond what the PLD composes per phase: the reason names the step count
    let phase = Phase::new(1.0, 0.01, 10_000_000_000).unwrap();
    let e = pld::epsilon(&[phase], Delta::new(1e-5).unwrap()).unwrap_err();
    assert!(matches!(e, pld::PldError::TooManySteps { .. }), "{e:?}");
}

#[test]
fn absurd_targets_and_rates_are_refused_naming_the_flag() {
    for (args, flag) in [
        (
            &["noise", "--epsilon", "1e300", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"][..],
            "--epsilon",
        ),
        (
            &["noise", "--epsilon", "2", "--sample-rate", "1e-12", "--steps", "100", "--delta", "1e-5"][..],
            "--sample-rate",
        ),
        (
            &["epsilon", "--noise", "1", "--sample-rate", "1e-12", "--steps", "100", "--delta", "1e-5"][..],
            "--sample-rate",
        ),
        (&["epsilon", "--noise", "1e300", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"][..], "--noise"),
        (&["epsilon", "--noise", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "0.9"][..], "--delta"),
        (
            &["epsilon", "--noise", "1", "--sample-rate", "0.01", "--steps", "10000000000000", "--delta", "1e-5"][..],
            "--steps",
        ),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(flag) && err.contains("must be in"), "{args:?}: {err}");
    }
}

#[test]
fn calibration_at_the_edges_of_the_ranges_ends_with_an_answer_or_a_clear_error() {
    // the smallest sample rate allowed: an answer within the target (PLD, or RDP where the PLD's grid
    // would not fit)
    let (code, out, err) =
        run(&["noise", "--epsilon", "50", "--sample-rate", "1e-10", "--steps", "100", "--delta", "1e-5", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json(&out)["epsilon"].as_f64().unwrap() <= 50.0, "{out}");
    // the largest epsilon allowed at q = 1 and one step: an answer
    let (code, out, err) =
        run(&["noise", "--epsilon", "100", "--sample-rate", "1", "--steps", "1", "--delta", "1e-5", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json(&out)["epsilon"].as_f64().unwrap() <= 100.0);
    // a tiny target: unreachable below the largest sigma, said so
    let (code, _, err) =
        run(&["noise", "--epsilon", "1e-6", "--sample-rate", "1", "--steps", "1000", "--delta", "1e-5"]);
    assert_eq!(code, 1);
    assert!(err.contains("--epsilon") && err.contains("no noise multiplier up to"), "{err}");
}

#[test]
fn delta_below_the_pld_tail_mass_falls_back_to_a_finite_rdp_epsilon() {
    for delta in ["1e-15", "1e-16", "1e-30"] {
        let (code, out, err) =
            run(&["epsilon", "--noise", "1.1", "--sample-rate", "0.01", "--steps", "1000", "--delta", delta, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v = json(&out);
        let eps = v["epsilon"].as_f64().expect("a number, not infinity");
        assert!(eps.is_finite() && eps > 0.0, "{delta}: {out}");
        assert_eq!(v["accountant"], "rdp", "{delta}: {out}");
        assert!(v["fallback"].as_str().unwrap().contains("tails"), "{out}");
    }
    // a delta the PLD can represent stays with the PLD
    let r =
        accountant::epsilon(AccountantKind::Pld, &[Phase::new(1.1, 0.01, 1000).unwrap()], Delta::new(1e-10).unwrap());
    assert_eq!(r.accountant, AccountantKind::Pld, "{r:?}");
}
