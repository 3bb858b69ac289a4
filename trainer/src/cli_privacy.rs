//! `medtrain privacy epsilon|noise`: the accountants on the command line.

use crate::privacy::accountant::{self, AccountantKind, Delta, EpsilonReport, NoiseMultiplier, Phase, SampleRate};
use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum PrivacyCommand {
    /// epsilon of a DP-SGD run: Poisson-subsampled Gaussian, add/remove one subject
    Epsilon {
        /// noise multiplier sigma (noise std / clip norm)
        #[arg(long = "noise", requires_all = ["sample_rate", "steps"])]
        noise: Option<f64>,
        /// sampling rate q of subjects per step
        #[arg(long, requires_all = ["noise", "steps"])]
        sample_rate: Option<f64>,
        #[arg(long, requires_all = ["noise", "sample_rate"])]
        steps: Option<u64>,
        /// a phase `SIGMA,Q,STEPS` (repeated: composed in order, before the one --noise gives), as
        /// release.json lists a run's `preparation_phases` and `phases`
        #[arg(long = "phase", value_name = "SIGMA,Q,STEPS", required_unless_present = "noise")]
        phases: Vec<String>,
        /// what a run's DP selections add to delta outright (release.json's
        /// `delta_added_by_preparation`): the accountant composes at delta less this
        #[arg(long, default_value_t = 0.0)]
        delta_added: f64,
        #[arg(long)]
        delta: f64,
        /// pld (tight, default) or rdp
        #[arg(long, default_value = "pld")]
        accountant: String,
        #[arg(long)]
        json: bool,
    },
    /// the smallest noise multiplier (to 0.1%) that keeps a run within a target epsilon
    Noise {
        #[arg(long)]
        epsilon: f64,
        #[arg(long)]
        delta: f64,
        #[arg(long)]
        sample_rate: f64,
        #[arg(long)]
        steps: u64,
        #[arg(long, default_value = "pld")]
        accountant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Output {
    epsilon: f64,
    delta: f64,
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
    accountant: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    /// the phases composed, where more than one (`steps` is their sum, the multiplier and rate the last's)
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Vec<(f64, f64, u64)>>,
}

fn print(out: &Output, json: bool) -> anyhow::Result<()> {
    if let Some(why) = &out.fallback {
        eprintln!("warning: PLD accountant not used ({why}); epsilon is the RDP bound");
    }
    if json {
        println!("{}", serde_json::to_string(out)?);
    } else {
        match &out.phases {
            Some(phases) => println!(
                "epsilon {:.4} at delta {:e} ({} accountant): {} phases, {} steps ({})",
                out.epsilon,
                out.delta,
                out.accountant,
                phases.len(),
                out.steps,
                phases.iter().map(|(s, q, n)| format!("{s},{q},{n}")).collect::<Vec<_>>().join("; ")
            ),
            None => println!(
                "epsilon {:.4} at delta {:e} ({} accountant): noise multiplier {}, sample rate {}, {} steps",
                out.epsilon, out.delta, out.accountant, out.noise_multiplier, out.sample_rate, out.steps
            ),
        }
    }
    Ok(())
}

fn report_output(r: EpsilonReport, delta: f64, sigma: f64, q: f64, steps: u64) -> Output {
    Output {
        epsilon: r.epsilon,
        delta,
        noise_multiplier: sigma,
        sample_rate: q,
        steps,
        accountant: r.accountant.name(),
        fallback: r.fallback,
        phases: None,
    }
}

/// The ranges the accountants are asked about, each flag checked before any computation. Outside
/// them the numbers mean nothing for DP-SGD (a sample rate below one subject in ten billion, a target
/// epsilon above 100) or the arithmetic stops being meaningful in f64.
const NOISE: (f64, f64) = (1e-10, 1e10);
const SAMPLE_RATE: (f64, f64) = (1e-10, 1.0);
const DELTA: (f64, f64) = (1e-100, 0.5);
const EPSILON: (f64, f64) = (1e-6, 100.0);
const STEPS: (u64, u64) = (1, 1_000_000_000_000);

fn in_range(flag: &str, v: f64, (lo, hi): (f64, f64)) -> anyhow::Result<f64> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        anyhow::bail!("{flag}: must be in [{lo:e}, {hi:e}], got {}", crate::short_number(v))
    }
}

fn steps_in_range(steps: u64) -> anyhow::Result<u64> {
    if (STEPS.0..=STEPS.1).contains(&steps) {
        Ok(steps)
    } else {
        anyhow::bail!("--steps: must be in [{}, {}], got {steps}", STEPS.0, STEPS.1)
    }
}

pub fn run(cmd: PrivacyCommand) -> anyhow::Result<()> {
    match cmd {
        PrivacyCommand::Epsilon { noise, sample_rate, steps, phases, delta_added, delta, accountant, json } => {
            let kind: AccountantKind = accountant.parse().map_err(anyhow::Error::msg).context("--accountant")?;
            // (flags: the noise's and the sample rate's, as errors name them)
            let phase = |flags: [&str; 2], noise: f64, q: f64, steps: u64| -> anyhow::Result<Phase> {
                let sigma = NoiseMultiplier::new(in_range(flags[0], noise, NOISE)?).context(flags[0].to_string())?;
                let q = SampleRate::new(in_range(flags[1], q, SAMPLE_RATE)?).context(flags[1].to_string())?;
                Ok(Phase { noise_multiplier: sigma, sample_rate: q, steps: steps_in_range(steps)? })
            };
            // a run of several phases (a resume under a new plan, a DP tokenizer's selection before it:
            // found by a tester, such a release's epsilon could not be recomputed here)
            let mut all = Vec::new();
            for p in &phases {
                let parts: Vec<&str> = p.split(',').map(str::trim).collect();
                let parsed = match parts.as_slice() {
                    [s, q, n] => s.parse::<f64>().ok().zip(q.parse::<f64>().ok()).zip(n.parse::<u64>().ok()),
                    _ => None,
                };
                let Some(((s, q), n)) = parsed else {
                    anyhow::bail!("--phase {}: expected SIGMA,Q,STEPS (1.1,0.004,1000)", crate::short_number(p));
                };
                all.push(phase(["--phase", "--phase"], s, q, n)?);
            }
            if let (Some(noise), Some(q), Some(steps)) = (noise, sample_rate, steps) {
                all.push(phase(["--noise", "--sample-rate"], noise, q, steps)?);
            }
            Delta::new(in_range("--delta", delta, DELTA)?).context("--delta")?;
            if !(0.0..delta).contains(&delta_added) {
                anyhow::bail!("--delta-added: must be in [0, --delta), got {}", crate::short_number(delta_added));
            }
            let left = Delta::new(delta - delta_added).context("--delta-added")?;
            let r = accountant::epsilon(kind, &all, left);
            let last = all.last().expect("a phase: required by the flags");
            let total: u64 = all.iter().map(|p| p.steps).sum();
            let mut out = report_output(r, delta, last.noise_multiplier.get(), last.sample_rate.get(), total);
            if all.len() > 1 {
                out.phases =
                    Some(all.iter().map(|p| (p.noise_multiplier.get(), p.sample_rate.get(), p.steps)).collect());
            }
            print(&out, json)
        }
        PrivacyCommand::Noise { epsilon, delta, sample_rate, steps, accountant, json } => {
            let kind: AccountantKind = accountant.parse().map_err(anyhow::Error::msg).context("--accountant")?;
            let epsilon = in_range("--epsilon", epsilon, EPSILON)?;
            let q = SampleRate::new(in_range("--sample-rate", sample_rate, SAMPLE_RATE)?).context("--sample-rate")?;
            let d = Delta::new(in_range("--delta", delta, DELTA)?).context("--delta")?;
            let steps = steps_in_range(steps)?;
            let (sigma, r) = accountant::calibrate(kind, epsilon, q, steps, d).context("--epsilon")?;
            // (found by a tester: 0.0976 was suggested, which train refuses)
            if sigma.get() < 0.1 {
                eprintln!(
                    "warning: noise multiplier {} is below 0.1, the least privacy.noise_multiplier train accepts",
                    crate::short_number(sigma.get())
                );
            }
            print(&report_output(r, delta, sigma.get(), sample_rate, steps), json)
        }
    }
}
