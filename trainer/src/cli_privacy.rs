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
        #[arg(long = "noise")]
        noise: f64,
        /// sampling rate q of subjects per step
        #[arg(long)]
        sample_rate: f64,
        #[arg(long)]
        steps: u64,
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
}

fn print(out: &Output, json: bool) -> anyhow::Result<()> {
    if let Some(why) = &out.fallback {
        eprintln!("warning: PLD accountant not used ({why}); epsilon is the RDP bound");
    }
    if json {
        println!("{}", serde_json::to_string(out)?);
    } else {
        println!(
            "epsilon {:.4} at delta {:e} ({} accountant): noise multiplier {}, sample rate {}, {} steps",
            out.epsilon, out.delta, out.accountant, out.noise_multiplier, out.sample_rate, out.steps
        );
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
        PrivacyCommand::Epsilon { noise, sample_rate, steps, delta, accountant, json } => {
            let kind: AccountantKind = accountant.parse().map_err(anyhow::Error::msg).context("--accountant")?;
            let sigma = NoiseMultiplier::new(in_range("--noise", noise, NOISE)?).context("--noise")?;
            let q = SampleRate::new(in_range("--sample-rate", sample_rate, SAMPLE_RATE)?).context("--sample-rate")?;
            let d = Delta::new(in_range("--delta", delta, DELTA)?).context("--delta")?;
            let steps = steps_in_range(steps)?;
            let phase = Phase { noise_multiplier: sigma, sample_rate: q, steps };
            let r = accountant::epsilon(kind, &[phase], d);
            print(&report_output(r, delta, noise, sample_rate, steps), json)
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
