//! The `medtrain` command line: arguments as typed (clap), validated, then turned into real objects.
//! `anyhow` lives only here, at the binary's edge; the library returns typed errors.

use crate::bench::{self, Mode};
use crate::cli_args;
use crate::model::workload::{self, Workload};
use crate::tensors::{self, TensorFile};
use crate::train::dp_grad;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "medtrain", version, about = "DP-SGD training node for medical machine learning")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum PermitCommand {
    /// Sign a permit with the node key into the node's store and set its budgets in the ledger.
    Issue {
        #[arg(long)]
        project: String,
        #[arg(long)]
        purpose: String,
        /// a dataset fingerprint (`medtrain data fingerprint INPUT`); repeat for several
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
        /// valid through this UTC day (YYYY-MM-DD)
        #[arg(long)]
        expires: String,
        #[arg(long)]
        epsilon: f64,
        #[arg(long)]
        delta: f64,
        #[arg(long, default_value_t = 0.6)]
        max_attack_auc: f64,
        /// issue it although the store holds an earlier permit of the project on a dataset whose budget
        /// the ledger does not hold (the ledger lost for good: nothing is known spent)
        #[arg(long)]
        ledger_lost: bool,
    },
    /// Revoke a permit (its file, or its id): no run is admitted or exported under it from now; it
    /// moves to NODE/permits/revoked/, and what was spent under it stays in the ledger.
    Revoke { permit: String },
    /// One permit, its signature checked.
    Show { file: PathBuf },
    /// Every permit in the node's store.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Settle a run that died from its last checkpoint's accountant history.
    Settle {
        run: PathBuf,
        /// settle at the run's whole reservation where its last recorded checkpoint is lost or damaged
        /// (nothing less can be proven spent)
        #[arg(long)]
        whole_reservation: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BudgetCommand {
    Show {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job end to end on the embedded synthetic cohort: writes a FHIR export, then trains
    /// configs/demo.toml (lab series and notes fused, DP-SGD by patient to epsilon 3) as `train` does.
    Demo {
        /// where the export, the config and the run (with report.html) go; an export already there is
        /// reused if it is the cohort these arguments write, a run before is kept (the new one goes to
        /// the next free `run-K`)
        #[arg(long, default_value = "medtrain-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        subjects: usize,
        /// CPU threads (0 = one per core)
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// print the result as one JSON object on the last line
        #[arg(long)]
        json: bool,
    },
    /// Train the model a config describes with DP-SGD by patient: checkpoints, evaluation on the
    /// held-out split (per site), and a run directory with metrics.json and report.html.
    Train {
        /// the training config (TOML: [data], [model], [optim], [privacy], [train])
        config: PathBuf,
        /// cpu, cuda or cuda:N (default: the config's train.backend)
        #[arg(long)]
        backend: Option<String>,
        /// CUDA: TF32 matmuls (faster, about 1e-3 relative error; default: the config's train.tf32)
        #[arg(long)]
        tf32: bool,
        /// CPU threads (default: the config's train.threads)
        #[arg(long)]
        threads: Option<usize>,
        /// the run directory (default: runs/<config name>-<UTC time>)
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// continue the run in --run-dir from its last checkpoint
        #[arg(long)]
        resume: bool,
        /// print the result as one JSON object on the last line
        #[arg(long)]
        json: bool,
        /// stop (with a checkpoint) after this many steps of this invocation
        #[arg(long, hide = true)]
        stop_after: Option<u64>,
        /// a NON-PRIVATE baseline for quality benchmarks (same sampling, no clipping or noise; epsilon
        /// infinite; never exportable)
        #[arg(long)]
        no_dp: bool,
    },
    /// The export gate: the weights of a finished DP run, with a signed release.json, into a new
    /// directory (the only way weights leave the node).
    Export {
        /// the run directory
        run: PathBuf,
        /// the release directory to write (new or empty)
        #[arg(long)]
        out: PathBuf,
        /// the node's Ed25519 key (default: $MEDTRAIN_NODE_KEY or ~/.medtrain/node_ed25519; made by `permit
        /// issue` or `node key --new`)
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// refuse when the membership-inference AUC (either attack) is above this (default: the permit's)
        #[arg(long)]
        max_attack_auc: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Permits (operators): what a project may train on, until when, with how much budget.
    #[command(subcommand)]
    Permit(PermitCommand),
    /// The privacy budget of each permit and dataset: spent, reserved and left.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Replay a CPU run from its sealed record and say whether the weights match bit for bit.
    Reproduce {
        /// the run directory
        run: PathBuf,
        /// CPU threads (default: the run's; the bits do not depend on it)
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Check a release: the SSHSIG signature of release.json and the SHA-256 of every file.
    Verify {
        /// the release directory
        dir: PathBuf,
        /// the node's public key (an OpenSSH public key file; default: the release's node.pub)
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Time full training steps of the benchmark workloads (shared/bench/WORKLOADS.md).
    Bench {
        /// lab-mlp, lab-transformer, notes-encoder, notes-bert, or all
        #[arg(long, default_value = "all")]
        workload: String,
        /// comma-separated modes: nodp, dp
        #[arg(long, default_value = "nodp,dp")]
        mode: String,
        /// CPU threads (0 = one per core)
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        device: BackendArgs,
        /// timed steps (after 3 warm-up steps)
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// batch size (default: the workload's)
        #[arg(long)]
        batch: Option<usize>,
        /// at most this many examples per forward and backward: the step's batch in micro-batches whose
        /// clipped gradients add (memory for activations of N examples instead of the batch's)
        #[arg(long, value_name = "N")]
        micro_batch: Option<usize>,
        /// one JSON line per (workload, mode)
        #[arg(long)]
        json: bool,
    },
    /// Privacy accounting: epsilon of a run, or the noise multiplier for a target epsilon.
    #[command(subcommand)]
    Privacy(crate::cli_privacy::PrivacyCommand),
    /// Data: the QA report of an input, its fingerprint.
    #[command(subcommand)]
    Data(crate::cli_data::DataCommand),
    /// The node: its devices, and the daemon that shares them between projects.
    #[command(subcommand)]
    Node(crate::cli_node::NodeCommand),
    /// The node's job queue (through the daemon's socket).
    #[command(subcommand)]
    Queue(crate::cli_node::QueueCommand),
    /// Project quotas per device class.
    #[command(subcommand)]
    Quota(crate::cli_node::QuotaCommand),
    /// Device-hours and epsilon per project.
    #[command(subcommand)]
    Usage(crate::cli_node::UsageCommand),
    /// The daemon's audit trail: every state change, who made it and when.
    Audit {
        /// from this day (YYYY-MM-DD, UTC) or Unix second on
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: crate::cli_node::SocketArg,
    },
    /// Write a synthetic pseudonymized cohort as a FHIR R4 bulk export.
    DemoData {
        /// number of subjects
        #[arg(long, default_value_t = 1000)]
        subjects: usize,
        /// output directory: written beside it and renamed into place; must not exist or be empty
        #[arg(long)]
        out: PathBuf,
        /// the cohort is deterministic in (subjects, seed)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// replace an existing non-empty --out (in one atomic exchange where the OS allows)
        #[arg(long)]
        force: bool,
    },
    /// The pooled embedding of a text by a Hugging Face BERT directory (config.json, model.safetensors,
    /// tokenizer.json), to compare the loader with the reference implementation.
    Embed {
        /// the model directory
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        /// cls (the first token's hidden state) or mean (over the tokens)
        #[arg(long, default_value = "cls")]
        pooling: String,
        /// one JSON object: {"input_ids": [...], "embedding": [...], "pooling": "..."}
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        device: BackendArgs,
    },
    /// The noise-free clipped gradient sum of one batch, for auditors (loss reduction: sum).
    DpGrad {
        #[arg(long)]
        workload: String,
        /// model weights (safetensors, PyTorch names and layouts)
        #[arg(long)]
        weights: PathBuf,
        /// batch (safetensors: x, mask, y, optional groups)
        #[arg(long)]
        batch: PathBuf,
        /// clip norm C
        #[arg(long)]
        clip: f32,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[command(flatten)]
        device: BackendArgs,
        /// output gradients (safetensors)
        #[arg(long)]
        out: PathBuf,
    },
}

/// The compute backend of a command: `--backend cpu|cuda[:N]` and `--tf32`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// cpu, or cuda (the first visible GPU) or cuda:N (default: cpu)
    #[arg(long)]
    backend: Option<String>,
    /// let cuBLAS round matmul operands to TF32 on tensor cores (faster; about 1e-3 relative error per
    /// product instead of f32's 1e-7). CUDA only; off unless given.
    #[arg(long)]
    tf32: bool,
}

impl BackendArgs {
    fn device(&self) -> anyhow::Result<crate::train::config::Device> {
        let d = match self.backend.as_deref() {
            None => crate::train::config::Device::Cpu,
            Some(s) => s.parse().map_err(|e: String| anyhow::anyhow!("--backend: {e}"))?,
        };
        if self.tf32 && d == crate::train::config::Device::Cpu {
            anyhow::bail!("--tf32: only for --backend cuda (the CPU computes in f32 throughout)");
        }
        Ok(d)
    }
}

/// Runs `$body` with `$be` bound to the backend `$device` names (`threads` for the CPU). The body is
/// generic code, compiled once per backend.
macro_rules! on_backend {
    ($device:expr, $threads:expr, $tf32:expr, |$be:ident| $body:expr) => {
        match $device {
            crate::train::config::Device::Cpu => {
                let $be = kernels::Cpu::new($threads)?;
                $body
            }
            crate::train::config::Device::Cuda(ordinal) => {
                let mut b = kernels::cuda::Cuda::new(ordinal)?;
                b.set_tf32($tf32)?;
                let $be = b;
                $body
            }
        }
    };
}

fn parse_workloads(s: &str) -> anyhow::Result<Vec<Workload>> {
    if s == "all" {
        return Ok(workload::ALL.to_vec());
    }
    s.split(',')
        .map(|w| {
            w.trim().parse::<Workload>().map_err(|e| anyhow::anyhow!("--workload: {e} (or all, alone, for every one)"))
        })
        .collect()
}

fn parse_modes(s: &str) -> anyhow::Result<Vec<Mode>> {
    s.split(',').map(|m| m.trim().parse::<Mode>().map_err(|e| anyhow::anyhow!("--mode: {e}"))).collect()
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Data(cmd) => crate::cli_data::run(cmd),
        Command::Node(cmd) => crate::cli_node::node(cmd),
        Command::Queue(cmd) => crate::cli_node::queue(cmd),
        Command::Quota(cmd) => crate::cli_node::quota(cmd),
        Command::Usage(cmd) => crate::cli_node::usage(cmd),
        Command::Audit { since, json, socket } => crate::cli_node::audit(since, json, socket),
        Command::Demo { out, subjects, threads, seed, json } => {
            let subjects = cli_args::within("--subjects", subjects, 200, cli_args::MAX_DEMO_SUBJECTS)?;
            let threads = cli_args::threads("--threads", threads);
            let s = crate::train::demo::run(&out, subjects, seed, (threads > 0).then_some(threads), json)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else if !s.finished {
                // stopped (SIGINT, SIGTERM) at a checkpoint, as train is: no held-out evaluation, no report
                eprintln!(
                    "demo interrupted at step {} of {}: no report was written; continue with: medtrain train {} \
                     --resume --run-dir {}",
                    s.steps,
                    s.planned_steps,
                    out.join("demo.toml").display(),
                    s.run_dir.display()
                );
            } else {
                println!(
                    "done in {:.1} s: held-out AUROC {}, epsilon {:.3} (delta {:.1e}, {}); report {}",
                    s.seconds,
                    s.auroc.map_or("n/a".into(), |a| format!("{a:.3}")),
                    s.epsilon,
                    s.delta,
                    s.accountant,
                    s.report.display()
                );
            }
            Ok(if s.finished { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Command::Train { config, backend, threads, run_dir, resume, json, stop_after, no_dp, tf32 } => {
            let backend = backend
                .map(|b| b.parse::<crate::train::config::Device>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--backend: {e}"))?;
            let threads = threads.map(|t| cli_args::within("--threads", t, 1, 256)).transpose()?;
            let threads = threads.map(|t| cli_args::threads("--threads", t));
            let opts = crate::train::run::RunOptions {
                backend,
                tf32,
                threads,
                run_dir,
                resume,
                stop_after,
                quiet: false,
                no_dp,
                replay: None,
            };
            let s = crate::train::run::train(&config, &opts)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else if s.finished {
                let auc = s.auroc.map_or(String::new(), |a| format!(", held-out AUROC {a:.3}"));
                println!(
                    "done in {:.1} s: {} steps, epsilon {:.3} (delta {:.1e}, {}){auc}; report {}",
                    s.seconds,
                    s.steps,
                    s.epsilon,
                    s.delta,
                    s.accountant,
                    s.report.display()
                );
            }
            Ok(if s.finished { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Command::Export { run, out, key_file, max_attack_auc, json } => {
            let key = key_file.unwrap_or_else(crate::train::export::default_key_path);
            let max_attack_auc =
                max_attack_auc.map(|a| cli_args::within("--max-attack-auc", a, 0.5, 1.0)).transpose()?;
            let r = crate::train::export::export(&run, &out, &key, max_attack_auc)?;
            if json {
                println!("{}", serde_json::json!({"release": out, "privacy": r["privacy"], "files": r["files"]}));
            } else {
                println!(
                    "released {} (epsilon {} at delta {}, signed by {}); check it with: medtrain verify {}",
                    out.display(),
                    r["privacy"]["epsilon"],
                    r["privacy"]["delta"],
                    key.display(),
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Permit(cmd) => crate::cli_permit::permit(cmd),
        Command::Budget(BudgetCommand::Show { project, json }) => crate::cli_permit::budget(project, json),
        Command::Reproduce { run, threads, json } => {
            let threads = threads.map(|t| cli_args::within("--threads", t, 1, 256)).transpose()?;
            let r = match crate::train::reproduce::reproduce(&run, threads) {
                Ok(r) => r,
                // stopped (SIGINT, SIGTERM) before its last step: a half-replayed run gets no verdict;
                // exit 3, as an interrupted train does
                Err(e @ crate::train::reproduce::ReproduceError::Interrupted { .. }) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(3));
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else if r.matches {
                println!(
                    "{}: the replay matches bit for bit ({} tensors, {} steps)",
                    run.display(),
                    r.tensors,
                    r.steps
                );
            } else if r.recorded_backend != "cpu" {
                println!(
                    "{}: trained on {}, replayed on the CPU: bits cannot match across devices; the largest weight \
                     difference is {:.3e} ({} tensors, {} steps)",
                    run.display(),
                    r.recorded_backend,
                    r.max_abs_difference,
                    r.tensors,
                    r.steps
                );
            } else {
                println!(
                    "{}: the replay differs, first at tensor {} (recorded CPU features {:?}, these {:?}){}",
                    run.display(),
                    r.first_difference.as_deref().unwrap_or("(count)"),
                    r.recorded_cpu_features,
                    r.cpu_features,
                    if r.recorded_code_version != r.code_version {
                        format!(
                            "; trained by medtrain {}, replayed by {}: another version may sum in another order",
                            r.recorded_code_version, r.code_version
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(if r.matches { ExitCode::SUCCESS } else { ExitCode::from(4) })
        }
        Command::Verify { dir, key, json } => {
            let bundled = key.is_none();
            let key = key
                .map(|k| {
                    crate::read_text_bounded(&k, 64 << 10).map_err(|e| anyhow::anyhow!("--key {}: {e}", k.display()))
                })
                .transpose()?;
            let (privacy, public) = crate::train::export::verify(&dir, key.as_deref())?;
            let fingerprint = crate::privacy::sshsig::public_fingerprint(&public).unwrap_or_default();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verified": true, "privacy": privacy, "key_fingerprint": fingerprint,
                        "key_from_release": bundled})
                );
            } else {
                // strings as they are (`pld`, not `"pld"`), numbers as JSON writes them
                // (a release signed by its own key may say anything: no terminal control codes printed)
                let field = |k: &str| match &privacy[k] {
                    serde_json::Value::String(s) => s.chars().map(|c| if c.is_control() { '?' } else { c }).collect(),
                    v => v.to_string(),
                };
                println!(
                    "{}: signature and hashes verified; epsilon {} at delta {} ({} accountant, unit {})",
                    dir.display(),
                    field("epsilon"),
                    field("delta"),
                    field("accountant"),
                    field("unit")
                );
                println!(
                    "signed by the key {fingerprint}{}",
                    if bundled {
                        ", the release's own node.pub: this proves the release is whole, not who made it; \
                         give the node operator's key with --key"
                    } else {
                        " (--key)"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoData { subjects, out, seed, force } => {
            let subjects = cli_args::within("--subjects", subjects, 1, cli_args::MAX_DEMO_SUBJECTS)?;
            let st = crate::data::demo::write_new(&out, subjects, seed, force).context("--out")?;
            println!(
                "wrote {} subjects, {} observations, {} encounters, {} notes ({:.1} MB) to {}",
                st.subjects,
                st.observations,
                st.encounters,
                st.notes,
                st.bytes as f64 / 1e6,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { workload, mode, threads, device, steps, batch, micro_batch, json } => {
            let workloads = parse_workloads(&workload)?;
            let modes = parse_modes(&mode)?;
            let steps = cli_args::within("--steps", steps, 1, cli_args::MAX_BENCH_STEPS)?;
            if let Some(b) = batch {
                for w in &workloads {
                    let most = (w.default_batch() * cli_args::BENCH_BATCH_FACTOR).max(cli_args::BENCH_BATCH_MIN_LIMIT);
                    cli_args::within("--batch", b, 1, most).with_context(|| format!("workload {}", w.name()))?;
                }
            }
            if micro_batch == Some(0) {
                anyhow::bail!("--micro-batch: a micro-batch needs at least 1 example (got 0)");
            }
            let dev = device.device()?;
            on_backend!(dev, cli_args::threads("--threads", threads), device.tf32, |be| {
                if !json {
                    println!(
                        "{:<16} {:<5} {:>6} {:>8} {:>12} {:>12}",
                        "workload", "mode", "batch", "threads", "ms/step", "samples/s"
                    );
                }
                for w in workloads {
                    for &m in &modes {
                        let r = bench::run(&be, w, m, batch.unwrap_or(w.default_batch()), micro_batch, steps)?;
                        if json {
                            println!("{}", serde_json::to_string(&r)?);
                        } else {
                            println!(
                                "{:<16} {:<5} {:>6} {:>8} {:>12.2} {:>12.1}",
                                r.workload,
                                r.mode,
                                r.batch,
                                if r.device == "cpu" { r.threads.to_string() } else { r.device.into() },
                                r.ms_per_step,
                                r.samples_per_s
                            );
                        }
                    }
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(cmd) => crate::cli_privacy::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Embed { model, text, pooling, json, threads, device } => {
            let pooling: crate::model::Pooling =
                pooling.parse().map_err(|e: String| anyhow::anyhow!("--pooling: {e}"))?;
            let dev = device.device()?;
            let e = on_backend!(dev, cli_args::threads("--threads", threads), device.tf32, |be| {
                match crate::model::hf::embed(&be, &model, &text, pooling) {
                    Err(crate::model::hf::HfError::Text(msg)) => anyhow::bail!("--text: {msg}"),
                    e => e.context("--model")?,
                }
            });
            if json {
                // the keys in the documented order: input_ids, embedding, pooling
                let ids = serde_json::to_string(&e.input_ids)?;
                let emb = serde_json::to_string(&e.embedding)?;
                println!("{{\"input_ids\":{ids},\"embedding\":{emb},\"pooling\":\"{}\"}}", pooling.name());
            } else {
                let ids: Vec<String> = e.input_ids.iter().map(|i| i.to_string()).collect();
                let emb: Vec<String> = e.embedding.iter().map(|v| format!("{v:.6}")).collect();
                println!("input_ids: {}\npooling: {}\nembedding: {}", ids.join(" "), pooling.name(), emb.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DpGrad { workload, weights, batch, clip, threads, device, out } => {
            let w: Workload = workload.parse().context("--workload")?;
            let dev = device.device()?;
            for (flag, input) in [("--weights", &weights), ("--batch", &batch)] {
                if cli_args::same_file(&out, input) {
                    anyhow::bail!("--out {}: the same file as {flag}; the gradients would replace it", out.display());
                }
            }
            let weights = TensorFile::read(&weights).context("--weights")?;
            let batch = TensorFile::read(&batch).context("--batch")?;
            let grads = on_backend!(dev, cli_args::threads("--threads", threads), device.tf32, |be| {
                dp_grad::clipped_gradient_sum(&be, w, &weights, &batch, clip)?
            });
            tensors::write_f32(&out, &grads).context("--out")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The command a panic is reported under: the subcommand names typed, only where they are names of
/// medtrain's commands (a closed set), never an argument's value.
pub fn command_label(args: &[String]) -> String {
    use clap::CommandFactory;
    let mut label = String::from("medtrain");
    let mut cmd = Cli::command();
    for a in args.iter().skip(1) {
        let Some(sub) = cmd.find_subcommand(a.as_str()).cloned() else { break };
        label.push(' ');
        label.push_str(sub.get_name());
        cmd = sub;
    }
    label
}

/// The whole text the panic hook prints: the command, where in the source, and that it is a bug. The
/// panic's payload is never part of it: a payload may carry note text or an identifier.
pub fn panic_text(command: &str, location: Option<&std::panic::Location>) -> String {
    let at = location.map_or_else(|| "an unknown location".to_owned(), |l| format!("{}:{}", l.file(), l.line()));
    format!(
        "error: {command}: internal error at {at}; this is a bug in medtrain; please report it \
         (the panic message is not shown: it may contain data)"
    )
}

/// Replaces the default panic hook (which prints the payload) with one that prints [`panic_text`].
pub fn install_panic_hook() {
    // args_os: an argument that is not UTF-8 (a cp932 path) made std::env::args panic before any
    // hook was installed, printing the argument; clap reports it as a bad argument instead
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let command = command_label(&args);
    std::panic::set_hook(Box::new(move |info| {
        // println! panics when stdout is gone: `| head` closed the pipe (leave quietly, as a tool killed
        // by SIGPIPE: 141), or a full disk (say so); the payload is std's own message, no data
        let payload = info.payload();
        let msg =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if let Some(stream) = msg.and_then(|m| m.strip_prefix("failed printing to ")) {
            if stream.contains("Broken pipe") {
                std::process::exit(141);
            }
            let what = stream.split_once(": ").map_or("", |(_, e)| e);
            let which = if stream.starts_with("stdout") { "standard output" } else { "standard error" };
            // (written as it may: standard error itself may be what failed)
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {command}: cannot write to {which}: {what}");
            std::process::exit(1);
        }
        // a panic of the parquet crate on a corrupt file is caught and reported as an error on the file
        if !crate::data::meds::in_parquet_reader() {
            eprintln!("{}", panic_text(&command, info.location()));
        }
    }));
}

/// A panic on purpose, for the test of the hook; only in debug builds (tests), never in a release.
#[cfg(debug_assertions)]
fn test_panic() {
    if let Ok(v) = std::env::var("MEDTRAIN_TEST_PANIC") {
        panic!("test panic carrying {v}");
    }
}

/// Exit codes: 0 success, 1 failure, 2 bad arguments (clap's own convention), 101 a bug (a panic), 141
/// standard output closed by its reader (as SIGPIPE would end a tool: `medtrain budget show | head -1`).
pub fn main() -> ExitCode {
    install_panic_hook();
    #[cfg(debug_assertions)]
    test_panic();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: most of this crate's errors already quote their
/// source in their own message (`path: cannot read: No such file`), and printing the chain as it
/// comes said the cause twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let m = cause.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
    }
    out
}
