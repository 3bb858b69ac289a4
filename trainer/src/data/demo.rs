//! `medtrain demo-data`: a synthetic, pseudonymized cohort written as a FHIR R4 bulk export.
//!
//! Each subject has a site (Organization), outpatient visits with baseline labs, one to three emergency
//! visits with labs, vital signs and a note (Japanese or English), and, for some, an inpatient stay with
//! daily labs and a discharge summary (Composition). Labs carry both LOINC and JLAC10 codings. The
//! signal: admission after an emergency visit depends on CRP, white cells, lactate and the complaint in
//! the note; creatinine rises (AKI) during stays more often for subjects with a high baseline and a
//! severe illness. Nothing in it is a real person: ids are random pseudonyms, there are no names,
//! addresses, birth dates or phone numbers.

use super::catalog::{self, Lab};
use super::time;
use base64::Engine;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::io::Write;
use std::path::Path;

struct Rng(ChaCha20Rng);

impl Rng {
    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
    fn hex(&mut self) -> String {
        format!("{:016x}", self.0.next_u64())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DemoStats {
    pub subjects: usize,
    pub observations: u64,
    pub encounters: u64,
    pub notes: u64,
    pub bytes: u64,
}

struct Writers {
    patient: std::io::BufWriter<std::fs::File>,
    observation: std::io::BufWriter<std::fs::File>,
    encounter: std::io::BufWriter<std::fs::File>,
    document: std::io::BufWriter<std::fs::File>,
    composition: std::io::BufWriter<std::fs::File>,
    stats: DemoStats,
}

fn lab(name: &str) -> &'static Lab {
    catalog::LABS.iter().find(|l| l.name == name).expect("catalogue lab")
}

/// The tests the demo cohort has, in the order of the catalogue it was written for (its channels).
pub const CHANNELS: &[&str] = &[
    "creatinine",
    "urea_nitrogen",
    "sodium",
    "potassium",
    "chloride",
    "glucose",
    "hba1c",
    "albumin",
    "ast",
    "alt",
    "crp",
    "wbc",
    "hemoglobin",
    "platelets",
    "lactate",
    "heart_rate",
    "systolic_bp",
    "body_temperature",
    "oxygen_saturation",
];

/// The reference interval of a demo test (every one has a public interval).
fn reference(l: &Lab) -> (f64, f64) {
    l.reference.unwrap_or(l.plausible)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Writers {
    #[allow(clippy::too_many_arguments)]
    fn observation(&mut self, rng: &mut Rng, subject: &str, t: i64, l: &Lab, value: f64) -> std::io::Result<()> {
        let v = value.clamp(l.plausible.0, l.plausible.1);
        let decimals = if reference(l).1 < 10.0 {
            2
        } else if reference(l).1 < 200.0 {
            1
        } else {
            0
        };
        let (category, cat_display) =
            if l.vital { ("vital-signs", "Vital Signs") } else { ("laboratory", "Laboratory") };
        let mut codings = format!(r#"{{"system":"{}","code":"{}","display":"{}"}}"#, catalog::LOINC, l.loinc, l.name);
        if let Some(j) = l.jlac10 {
            codings.push_str(&format!(r#",{{"system":"{}","code":"{j}"}}"#, catalog::JLAC10));
        }
        let when = time::format(t);
        writeln!(
            self.observation,
            r#"{{"resourceType":"Observation","id":"{id}","meta":{{"profile":["http://hl7.org/fhir/StructureDefinition/Observation"]}},"status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"{category}","display":"{cat_display}"}}]}}],"code":{{"coding":[{codings}],"text":"{name}"}},"subject":{{"reference":"Patient/{subject}"}},"effectiveDateTime":"{when}","issued":"{when}","valueQuantity":{{"value":{v:.decimals$},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}},"referenceRange":[{{"low":{{"value":{lo}}},"high":{{"value":{hi}}}}}]}}"#,
            id = rng.hex(),
            name = l.name,
            unit = l.unit,
            lo = reference(l).0,
            hi = reference(l).1,
        )?;
        self.stats.observations += 1;
        Ok(())
    }

    fn encounter(
        &mut self,
        rng: &mut Rng,
        subject: &str,
        class: &str,
        start: i64,
        end: i64,
        site: &str,
    ) -> std::io::Result<()> {
        writeln!(
            self.encounter,
            r#"{{"resourceType":"Encounter","id":"{}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"{class}"}},"subject":{{"reference":"Patient/{subject}"}},"period":{{"start":"{}","end":"{}"}},"serviceProvider":{{"reference":"Organization/{site}"}}}}"#,
            rng.hex(),
            time::format(start),
            time::format(end)
        )?;
        self.stats.encounters += 1;
        Ok(())
    }

    fn note(&mut self, rng: &mut Rng, subject: &str, t: i64, text: &str, lang: &str) -> std::io::Result<()> {
        let data = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        writeln!(
            self.document,
            r#"{{"resourceType":"DocumentReference","id":"{}","status":"current","type":{{"coding":[{{"system":"http://loinc.org","code":"34111-5","display":"Emergency department note"}}]}},"subject":{{"reference":"Patient/{subject}"}},"date":"{}","content":[{{"attachment":{{"contentType":"text/plain; charset=utf-8","language":"{lang}","data":"{data}"}}}}]}}"#,
            rng.hex(),
            time::format(t)
        )?;
        self.stats.notes += 1;
        Ok(())
    }

    fn summary(&mut self, rng: &mut Rng, subject: &str, t: i64, sections: &[(&str, String)]) -> std::io::Result<()> {
        let secs: Vec<String> = sections
            .iter()
            .map(|(title, body)| {
                let div = format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p></div>",
                    body.replace('&', "&amp;").replace('<', "&lt;")
                );
                format!(r#"{{"title":{},"text":{{"status":"generated","div":{}}}}}"#, json(title), json(&div))
            })
            .collect();
        writeln!(
            self.composition,
            r#"{{"resourceType":"Composition","id":"{}","status":"final","type":{{"coding":[{{"system":"http://loinc.org","code":"18842-5","display":"Discharge summary"}}]}},"subject":{{"reference":"Patient/{subject}"}},"date":"{}","title":"Discharge summary","section":[{}]}}"#,
            rng.hex(),
            time::format(t),
            secs.join(",")
        )?;
        self.stats.notes += 1;
        Ok(())
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

const COMPLAINTS_JA: [(&str, f64); 6] =
    [("発熱と悪寒", 0.8), ("呼吸困難", 1.2), ("腹痛", 0.3), ("めまい", -0.6), ("意識障害", 1.5), ("軽度の咳嗽", -0.9)];
const COMPLAINTS_EN: [(&str, f64); 6] = [
    ("fever and chills", 0.8),
    ("shortness of breath", 1.2),
    ("abdominal pain", 0.3),
    ("dizziness", -0.6),
    ("altered mental status", 1.5),
    ("mild cough", -0.9),
];

/// Writes the cohort; returns what was written. Deterministic in (`subjects`, `seed`).
pub fn write(dir: &Path, subjects: usize, seed: u64) -> std::io::Result<DemoStats> {
    std::fs::create_dir_all(dir)?;
    let open = |n: &str| std::fs::File::create(dir.join(n)).map(|f| std::io::BufWriter::with_capacity(1 << 20, f));
    let mut w = Writers {
        patient: open("Patient.ndjson")?,
        observation: open("Observation.ndjson")?,
        encounter: open("Encounter.ndjson")?,
        document: open("DocumentReference.ndjson")?,
        composition: open("Composition.ndjson")?,
        stats: DemoStats { subjects, observations: 0, encounters: 0, notes: 0, bytes: 0 },
    };
    let sites = ["site-01", "site-02", "site-03", "site-04", "site-05"];
    {
        let mut org = open("Organization.ndjson")?;
        for (i, s) in sites.iter().enumerate() {
            writeln!(org, r#"{{"resourceType":"Organization","id":"{s}","name":"Demo hospital {}"}}"#, i + 1)?;
        }
    }
    let mut rng = Rng(ChaCha20Rng::seed_from_u64(seed));
    let epoch = time::days_from_civil(2023, 1, 1) * 86_400;
    let baseline_labs =
        ["creatinine", "urea_nitrogen", "sodium", "potassium", "glucose", "hemoglobin", "albumin", "alt"];
    let ed_labs = [
        "creatinine",
        "urea_nitrogen",
        "sodium",
        "potassium",
        "crp",
        "wbc",
        "hemoglobin",
        "platelets",
        "glucose",
        "lactate",
        "ast",
        "alt",
    ];
    for _ in 0..subjects {
        let id = rng.hex();
        let site = sites[rng.below(sites.len() as u64) as usize];
        let age = 20 + rng.below(70) as i64;
        let gender = if rng.chance(0.5) { "female" } else { "male" };
        writeln!(
            w.patient,
            r#"{{"resourceType":"Patient","id":"{id}","gender":"{gender}","extension":[{{"url":"http://example.org/age-band","valueString":"{}-{}"}}],"managingOrganization":{{"reference":"Organization/{site}"}}}}"#,
            age / 10 * 10,
            age / 10 * 10 + 9
        )?;
        // latent traits
        let kidney = rng.normal(); // high: worse kidney function
        let frailty = rng.normal();
        let cr_base =
            reference(lab("creatinine")).1 * (0.75 + 0.25 * kidney.max(-1.5) + 0.02 * (age - 50) as f64).max(0.4);
        let japanese = rng.chance(0.7);
        let mut t = epoch + rng.below(300 * 86_400) as i64;
        // outpatient visits with baseline labs
        for _ in 0..1 + rng.below(3) {
            w.encounter(&mut rng, &id, "AMB", t, t + 3600, site)?;
            for name in baseline_labs {
                let l = lab(name);
                let v = if name == "creatinine" {
                    cr_base * (1.0 + 0.05 * rng.normal())
                } else {
                    let mid = (reference(l).0 + reference(l).1) / 2.0;
                    mid + (reference(l).1 - reference(l).0) / 4.0 * (rng.normal() + 0.3 * frailty)
                };
                w.observation(&mut rng, &id, t + 600, l, v)?;
            }
            t += (20 + rng.below(60)) as i64 * 86_400;
        }
        // emergency visits
        for _ in 0..1 + rng.below(3) {
            let severity = 0.8 * rng.normal() + 0.4 * frailty;
            let (complaint, weight) =
                if japanese { COMPLAINTS_JA[rng.below(6) as usize] } else { COMPLAINTS_EN[rng.below(6) as usize] };
            let infl = severity + 0.5 * weight + 0.5 * rng.normal();
            let crp = (0.1 * (1.6 * infl + 0.5).exp()).min(40.0);
            let wbc = 7.0 + 3.0 * infl.max(-1.0) + 1.0 * rng.normal();
            let lactate = 1.2 + 0.8 * infl.max(0.0) + 0.3 * rng.normal().abs();
            let cr_ed = cr_base * (1.0 + 0.15 * severity.max(0.0) + 0.05 * rng.normal());
            let ed = t;
            w.encounter(&mut rng, &id, "EMER", ed, ed + 4 * 3600, site)?;
            for name in ed_labs {
                let l = lab(name);
                let v = match name {
                    "creatinine" => cr_ed,
                    "crp" => crp,
                    "wbc" => wbc,
                    "lactate" => lactate,
                    _ => {
                        let mid = (reference(l).0 + reference(l).1) / 2.0;
                        mid + (reference(l).1 - reference(l).0) / 4.0 * (rng.normal() + 0.2 * severity)
                    }
                };
                w.observation(&mut rng, &id, ed + 1800, l, v)?;
            }
            let hr = 80.0 + 12.0 * infl + 6.0 * rng.normal();
            w.observation(&mut rng, &id, ed + 600, lab("heart_rate"), hr)?;
            let temp_v = 36.8 + 0.6 * infl.max(0.0) + 0.2 * rng.normal();
            w.observation(&mut rng, &id, ed + 600, lab("body_temperature"), temp_v)?;
            let sbp = 128.0 - 8.0 * infl.max(0.0) + 10.0 * rng.normal();
            w.observation(&mut rng, &id, ed + 600, lab("systolic_bp"), sbp)?;
            let temp = temp_v;
            let note = if japanese {
                format!(
                    "主訴：{complaint}。来院時 体温 {temp:.1}℃、脈拍 {hr:.0}/分。{}既往歴に特記事項なし。CRP {crp:.1} mg/dL。",
                    if infl > 1.0 { "全身状態不良。" } else { "全身状態は比較的良好。" }
                )
            } else {
                format!(
                    "Chief complaint: {complaint}. On arrival T {temp:.1} C, HR {hr:.0}/min. {}No relevant history. CRP {crp:.1} mg/dL.",
                    if infl > 1.0 { "Appears unwell. " } else { "Appears comfortable. " }
                )
            };
            w.note(&mut rng, &id, ed + 1200, &note, if japanese { "ja" } else { "en" })?;
            let admit = rng.chance(sigmoid(1.4 * infl - 0.6));
            if admit {
                let start = ed + (1 + rng.below(5) as i64) * 3600;
                let days = 2 + rng.below(8) as i64;
                w.encounter(&mut rng, &id, "IMP", start, start + days * 86_400, site)?;
                // AKI: creatinine climbs during the stay for some
                let aki = rng.chance(sigmoid(1.2 * kidney + 1.0 * severity - 1.2));
                let mut cr = cr_ed;
                for d in 1..=days {
                    cr = if aki && d <= 3 {
                        cr + 0.25 + 0.15 * rng.uniform()
                    } else {
                        cr * (0.97 + 0.04 * rng.normal())
                    };
                    let td = start + d * 86_400 - 6 * 3600;
                    w.observation(&mut rng, &id, td, lab("creatinine"), cr)?;
                    let k = 4.2 + 0.3 * rng.normal() + if aki { 0.1 * d as f64 } else { 0.0 };
                    w.observation(&mut rng, &id, td, lab("potassium"), k)?;
                    w.observation(&mut rng, &id, td, lab("crp"), crp * (0.8f64).powi(d as i32))?;
                }
                let end = start + days * 86_400;
                let sections = if japanese {
                    vec![
                        ("入院経過", format!("{complaint}にて入院。{}日間の加療を行った。", days)),
                        (
                            "退院時所見",
                            if aki {
                                "経過中に腎機能の悪化を認めた。".to_owned()
                            } else {
                                "経過良好。".to_owned()
                            },
                        ),
                    ]
                } else {
                    vec![
                        ("Hospital course", format!("Admitted with {complaint}; treated for {days} days.")),
                        (
                            "At discharge",
                            if aki {
                                "Kidney function worsened during the stay.".to_owned()
                            } else {
                                "Uneventful recovery.".to_owned()
                            },
                        ),
                    ]
                };
                w.summary(&mut rng, &id, end, &sections)?;
                t = end;
            }
            t += (30 + rng.below(120)) as i64 * 86_400;
        }
    }
    for f in [&mut w.patient, &mut w.observation, &mut w.encounter, &mut w.document, &mut w.composition] {
        f.flush()?;
    }
    let mut bytes = 0;
    for e in std::fs::read_dir(dir)? {
        bytes += e?.metadata()?.len();
    }
    w.stats.bytes = bytes;
    Ok(w.stats)
}

/// Why `demo-data` did not write its output.
#[derive(Debug, thiserror::Error)]
pub enum DemoOutError {
    #[error("{0}: exists and is not empty; pass --force to replace it")]
    NotEmpty(std::path::PathBuf),
    #[error("{0}: exists and is not a directory")]
    NotADirectory(std::path::PathBuf),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Writes the cohort to `out` as a whole or not at all: into a new directory beside `out`, renamed into
/// place once complete, so a failed or interrupted run never leaves a half-written export under the
/// name. An existing non-empty `out` is refused unless `force`; then it is exchanged with the new
/// directory in one `renameat2(RENAME_EXCHANGE)` where the file system supports it (readers see the
/// old or the new export, never neither), else by two renames, and the old one is removed.
pub fn write_new(out: &Path, subjects: usize, seed: u64, force: bool) -> Result<DemoStats, DemoOutError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoOutError::Io { path, source }
    };
    let exists = match std::fs::symlink_metadata(out) {
        Ok(m) if !m.is_dir() => return Err(DemoOutError::NotADirectory(out.into())),
        Ok(_) => {
            let non_empty = std::fs::read_dir(out).map_err(io(out))?.next().is_some();
            if non_empty && !force {
                return Err(DemoOutError::NotEmpty(out.into()));
            }
            non_empty
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(out)(e)),
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = out.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tmp = parent.join(format!(".{name}.partial-{}-{nonce}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let written = write(&tmp, subjects, seed).map_err(io(&tmp));
    let stats = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let placed = if exists { replace(&tmp, out, &parent, &name, nonce) } else { std::fs::rename(&tmp, out) };
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(out)(e));
    }
    Ok(stats)
}

/// Puts `new` in the place of the non-empty directory `out`; afterwards `new` names nothing.
fn replace(new: &Path, out: &Path, parent: &Path, name: &str, nonce: u128) -> std::io::Result<()> {
    if exchange(new, out).is_ok() {
        // `new` now names the old export
        return std::fs::remove_dir_all(new);
    }
    let old = parent.join(format!(".{name}.old-{}-{nonce}", std::process::id()));
    std::fs::rename(out, &old)?;
    if let Err(e) = std::fs::rename(new, out) {
        let _ = std::fs::rename(&old, out);
        return Err(e);
    }
    std::fs::remove_dir_all(&old)
}

/// Swaps two paths atomically (Linux `renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call; renameat2 only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
