//! `medtrain data check|fingerprint`.

use crate::data::{self, guard::Policy, ReadOptions};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// QA report of an input (FHIR bulk export, MEDS root, CSV). Exit code 1 when blocking findings
    /// exist, 2 when the input cannot be read.
    Check {
        path: PathBuf,
        #[arg(long)]
        json: bool,
        /// reject (default): identifiers block; redact: they are removed and reported as warnings
        #[arg(long, default_value = "reject")]
        identifiers: Policy,
        /// also read vital-sign Observations
        #[arg(long)]
        vitals: bool,
        /// the largest fraction of malformed lines tolerated (more is blocking)
        #[arg(long, default_value_t = 0.0)]
        max_malformed: f64,
        /// code systems in order of preference (comma-separated)
        #[arg(long, default_value = "http://loinc.org,urn:oid:1.2.392.200119.4.504")]
        code_systems: String,
        /// also print the dataset fingerprint
        #[arg(long)]
        fingerprint: bool,
        /// a longer line is malformed and skipped (read.max_line_bytes)
        #[arg(long, default_value_t = data::ReadLimits::DEFAULT_MAX_LINE_BYTES)]
        max_line_bytes: u64,
        /// a longer note is cut and counted (read.max_note_bytes)
        #[arg(long, default_value_t = data::ReadLimits::DEFAULT_MAX_NOTE_BYTES)]
        max_note_bytes: u64,
        /// a .gz file inflating to more is refused (read.max_decompressed_bytes)
        #[arg(long, default_value_t = data::ReadLimits::DEFAULT_MAX_DECOMPRESSED_BYTES)]
        max_decompressed_bytes: u64,
        /// a .gz file inflating more than this many times its size is refused (read.max_gz_ratio)
        #[arg(long, default_value_t = data::ReadLimits::DEFAULT_MAX_GZ_RATIO)]
        max_gz_ratio: f64,
        /// the text encoding of CSV files: auto, or a name such as shift_jis, euc-jp, windows-1252
        /// (read.encoding)
        #[arg(long, default_value = "auto", value_parser = parse_encoding)]
        encoding: data::charset::Choice,
        /// the zone of times written without one: an IANA name (Asia/Tokyo), an offset (+09:00) or UTC
        /// (read.time_zone; absent: read as UTC, with a warning where other times carry an offset)
        #[arg(long, value_parser = parse_time_zone)]
        time_zone: Option<data::time::Zone>,
        /// CSV header names where the files do not use medtrain's: role=name,... with roles subject_id,
        /// time, code, value, text_value, unit, system, text (read.columns), e.g.
        /// time=charttime,code=itemid,value=valuenum,text_value=value,unit=valueuom
        #[arg(long, value_parser = parse_columns)]
        columns: Option<data::csv::Columns>,
        /// a CSV file of local codes and the LOINC or JLAC10 code each is read as (read.code_map;
        /// columns code, system, loinc, jlac10, unit)
        #[arg(long)]
        code_map: Option<PathBuf>,
    },
    /// Training examples from a data config (TOML): labels, subject splits, lab series and note tokens,
    /// one safetensors file per split and manifest.json. Refuses (exit 1) input with blocking findings.
    Prepare {
        #[arg(long)]
        config: PathBuf,
        /// output directory (created)
        #[arg(long)]
        out: PathBuf,
        /// the input, instead of the config's `input`
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// The content hash of an input (`sha256:...`).
    Fingerprint { path: PathBuf },
}

fn parse_encoding(s: &str) -> Result<data::charset::Choice, String> {
    data::charset::Choice::parse(s)
}

fn parse_time_zone(s: &str) -> Result<data::time::Zone, String> {
    data::time::Zone::parse(s)
}

fn parse_columns(s: &str) -> Result<data::csv::Columns, String> {
    data::csv::Columns::parse(s)
}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Check {
            path,
            json,
            identifiers,
            vitals,
            max_malformed,
            code_systems,
            fingerprint,
            max_line_bytes,
            max_note_bytes,
            max_decompressed_bytes,
            max_gz_ratio,
            encoding,
            time_zone,
            columns,
            code_map,
        } => {
            if !(0.0..=1.0).contains(&max_malformed) {
                anyhow::bail!("--max-malformed must be a fraction in [0, 1] (got {max_malformed})");
            }
            let limits = data::ReadLimits { max_line_bytes, max_note_bytes, max_decompressed_bytes, max_gz_ratio };
            if let Err((key, msg)) = limits.validate() {
                anyhow::bail!("--{}: {msg}", key.replace('_', "-"));
            }
            let code_systems: Vec<String> =
                code_systems.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            let code_map = match code_map {
                Some(m) => Some(std::sync::Arc::new(
                    data::code_map::CodeMap::load(&m, &code_systems, encoding, limits)
                        .map_err(|e| anyhow::anyhow!("--code-map: {e}"))?,
                )),
                None => None,
            };
            let opts = ReadOptions {
                code_systems,
                vitals,
                identifiers,
                max_malformed_fraction: max_malformed,
                keep_events: false,
                limits,
                encoding,
                time_zone,
                columns: columns.unwrap_or_default(),
                code_map,
            };
            // no report: the input cannot be read (a file that is no text, a header without the columns
            // a layout needs, a line past --max-line-bytes), 2 as documented; 1 is for blocking findings
            let (_, report) = match data::read(&path, &opts) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot read the input: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let fp = if fingerprint { Some(data::fingerprint::fingerprint(&path)?) } else { None };
            if json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(fp) = fp {
                    v["fingerprint"] = fp.into();
                }
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print!("{}", report.render());
                if let Some(fp) = fp {
                    println!("fingerprint {fp}");
                }
            }
            Ok(if report.blocking { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        DataCommand::Prepare { config, out, input } => {
            let mut cfg = data::prepare::DataConfig::load(&config)?;
            if let Some(i) = input {
                cfg.input = i;
            }
            let (report, manifest) = match data::prepare::prepare(&cfg, &out) {
                Ok(r) => r,
                Err(e) if e.unreadable() => {
                    eprintln!("error: cannot read the input: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            match manifest {
                None => {
                    eprint!("{}", report.render());
                    eprintln!("error: the input has blocking findings; nothing was written");
                    Ok(ExitCode::from(1))
                }
                Some(m) => {
                    let warnings = report.render_findings(data::check::Severity::Warning);
                    if !warnings.is_empty() {
                        eprint!("warnings of the input (`medtrain data check` for the whole report):\n{warnings}");
                    }
                    println!("{}", serde_json::to_string_pretty(&m)?);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        DataCommand::Fingerprint { path } => {
            // (an input that cannot be read exits 2, as `data check` does: found by a tester, it was 1)
            match data::fingerprint::fingerprint(&path) {
                Ok(fp) => {
                    println!("{fp}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: cannot read the input: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
