//! The QA report of an input (`medtrain data check`): what it holds and what is wrong with it.
//!
//! Findings name a kind, a resource and a field, and count; malformed lines are located by file and line
//! number. No finding carries a value or an identifier from the data: a string from the data (a unit, a
//! code, a code system, an encounter class, a resource type) is printed only when it belongs to a closed
//! set ([`reportable_unit`], the catalogue, [`super::reportable`]); anything else is counted under a
//! placeholder ("57 codes outside the catalogue").

use super::{catalog, guard, reportable, Code, Dataset, Event, EventKind, ReadOptions, NONE};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// blocks training on this input
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: String,
    pub resource: String,
    pub field: String,
    pub count: u64,
    /// a public detail: a code system, a code, a unit, a fraction (never patient data)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// where: a file and the first line numbers
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<u64>,
}

/// A code the report may name (a catalogue code, an encounter class, the note placeholder).
#[derive(Debug, Clone, Serialize)]
pub struct CodeSummary {
    pub code: String,
    pub system: String,
    /// the units that may be printed ([`reportable_unit`])
    pub units: Vec<String>,
    /// how many other units the code's events carry (not printed)
    #[serde(skip_serializing_if = "is_zero")]
    pub other_units: u64,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

/// Codes the report does not name, per kind of event: how many codes, how many events.
#[derive(Debug, Clone, Serialize)]
pub struct OtherCodes {
    pub kind: &'static str,
    pub codes: u64,
    pub events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The unit as a report may print it, or `None` (the unit is counted, not printed). Every unit that
/// reaches a report passes through here: a valid UCUM unit whose annotations come from a closed list.
pub fn reportable_unit(unit: &str) -> Option<&str> {
    super::units::is_reportable(unit).then_some(unit)
}

/// The (system, code) of an event code as a report may print them: a catalogue code, an encounter class
/// of the v3 value set (under a known or no system), the readers' note placeholder; else `None`.
fn reportable_code(code: &Code, kind: Option<EventKind>) -> Option<(&'static str, &'static str)> {
    if let Some(lab) = catalog::lookup(&code.system, &code.code) {
        return Some(if code.system == catalog::LOINC {
            (catalog::LOINC, lab.loinc)
        } else {
            (catalog::JLAC10, lab.jlac10.unwrap_or(lab.loinc))
        });
    }
    let system = if code.system.is_empty() { Some("") } else { reportable::code_system(&code.system) };
    match (kind, system) {
        (Some(EventKind::Encounter), Some(system)) => reportable::encounter_class(&code.code).map(|c| (system, c)),
        (Some(EventKind::Note), Some("medtrain:note")) if code.code == "note" => Some(("medtrain:note", "note")),
        _ => None,
    }
}

#[derive(Debug, Default, Clone)]
struct CodeStat {
    count: u64,
    units: BTreeMap<u32, u64>,
    implausible: u64,
    /// events per kind (by [`EventKind::ALL`]'s order): one code can be read as several kinds (a MEDS
    /// code whose rows have values and lack them is a lab and an `other`), and each kind's events are
    /// counted under it, whichever came first
    kinds: [u64; EventKind::ALL.len()],
    /// the code's catalogue entry, looked up once (None: not yet looked up)
    lab: Option<Option<&'static catalog::Lab>>,
}

/// Malformed lines of one file: how many, and per reason how many and the first few line numbers.
#[derive(Debug, Default, Clone)]
struct Malformed {
    count: u64,
    reasons: BTreeMap<&'static str, (u64, Vec<u64>)>,
}

const LINES_KEPT: usize = 20;

/// A hasher for keys that are hashes already: their bits are the hash.
#[derive(Default)]
pub struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // only u64 keys are hashed with it; any other key still hashes (by its bytes, folded)
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub subjects: u64,
    pub events: BTreeMap<&'static str, u64>,
    pub notes: u64,
    /// FHIR resource types; any other is counted under [`reportable::OTHER_RESOURCE_TYPE`]
    pub resources: BTreeMap<&'static str, u64>,
    pub codes: Vec<CodeSummary>,
    /// codes outside [`CodeSummary`]'s closed set, counted per kind
    pub other_codes: Vec<OtherCodes>,
    pub findings: Vec<Finding>,
    pub blocking: bool,
    pub files: u64,
    pub lines: u64,
    pub bytes: u64,
    /// how the input's times were written (without a zone, with an offset)
    #[serde(skip)]
    pub zones: super::time::Zones,
    #[serde(skip)]
    code_stats: Vec<CodeStat>,
    #[serde(skip)]
    malformed: BTreeMap<String, Malformed>,
    /// the input directory being read ([`crate::data::read`]): findings name a file by its path under it
    #[serde(skip)]
    pub(crate) root: Option<std::path::PathBuf>,
    #[serde(skip)]
    raw: BTreeMap<(Severity, String, String, String, Option<String>), u64>,
    /// [`Report::count`]'s findings, by static names (no allocation per event), merged into `raw` when
    /// the report is finished
    #[serde(skip)]
    counted: HashMap<(Severity, &'static str, &'static str, &'static str), u64>,
    #[serde(skip)]
    /// the events' hashes (already SipHash outputs: set by their own bits, not hashed again)
    seen: HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>,
    #[serde(skip)]
    duplicates: HashMap<&'static str, u64>,
    /// the `read.code_map` rows that mapped a code of the input
    #[serde(skip)]
    code_map_used: Vec<bool>,
    /// where identifiers were found, by (kind, resource, field): the first file and its first lines
    /// (a blocking finding said nothing of where its resources are)
    #[serde(skip)]
    identifier_places: HashMap<(String, String, String), (String, Vec<u64>)>,
    /// the file and line being read, where a reader says them ([`Report::reading`]; line 0: none)
    #[serde(skip)]
    place: (String, u64),
    /// where [`Report::count_at`]'s warnings and errors were found: the first file (as read) and its
    /// first lines
    #[serde(skip)]
    count_places: HashMap<(&'static str, &'static str, &'static str), (String, Vec<u64>)>,
}

impl Report {
    /// Counts an event whose code `read.code_map`'s row `row` (of `rows`) mapped.
    pub fn code_mapped(&mut self, row: u32, rows: usize, resource: &'static str) {
        if self.code_map_used.len() < rows {
            self.code_map_used.resize(rows, false);
        }
        self.code_map_used[row as usize] = true;
        self.count(Severity::Info, "code_mapped", resource, "code");
    }

    /// What the report says of a code map after the read: its rows that mapped no code of the input,
    /// those whose target is outside the catalogue (read, and no channel takes them), and its rows
    /// without a target (all info, the map's file named).
    pub fn code_map_findings(&mut self, map: &super::code_map::CodeMap) {
        let name = map.path.file_name().map(|n| guard::shown_path(&n.to_string_lossy())).unwrap_or_default();
        let used = |row: usize| self.code_map_used.get(row).copied().unwrap_or(false);
        let unused = (0..map.len()).filter(|&r| !used(r)).count();
        let outside = (0..map.len()).filter(|&r| used(r) && !map.in_catalogue(r as u32)).count();
        for (kind, n) in [
            ("code_map_unused", unused),
            ("code_map_outside_catalogue", outside),
            ("code_map_without_target", map.unmapped_rows),
        ] {
            if n > 0 {
                self.finding(Severity::Info, kind, "code_map", "code", Some(&name), n as u64);
            }
        }
    }

    /// Counts one finding (kind, resource, field) `n` times.
    pub fn finding(
        &mut self,
        severity: Severity,
        kind: &str,
        resource: &str,
        field: &str,
        detail: Option<&str>,
        n: u64,
    ) {
        *self.raw.entry((severity, kind.into(), resource.into(), field.into(), detail.map(Into::into))).or_default() +=
            n;
    }

    /// [`Report::finding`] once, without detail, for the findings readers count per line or event (a
    /// skipped category, a missing unit): `finding` allocates its key's strings on every call.
    pub fn count(&mut self, severity: Severity, kind: &'static str, resource: &'static str, field: &'static str) {
        *self.counted.entry((severity, kind, resource, field)).or_default() += 1;
    }

    /// [`Report::count`] of a finding of the resource at [`Report::reading`]'s place: a warning or an
    /// error names the first file it was found in and its first lines there.
    pub fn count_at(&mut self, severity: Severity, kind: &'static str, resource: &'static str, field: &'static str) {
        self.count(severity, kind, resource, field);
        let (file, line) = &self.place;
        if severity == Severity::Info || *line == 0 {
            return;
        }
        let (at, lines) =
            self.count_places.entry((kind, resource, field)).or_insert_with(|| (file.clone(), Vec::new()));
        if at == file && lines.len() < LINES_KEPT && lines.last() != Some(line) {
            lines.push(*line);
        }
    }

    fn merge_counted(&mut self) {
        for ((sev, kind, resource, field), n) in self.counted.drain() {
            *self.raw.entry((sev, kind.into(), resource.into(), field.into(), None)).or_default() += n;
        }
    }

    /// Replaces this report's findings in `resource.field` with `other`'s (a second pass that saw more).
    pub fn replace_findings_of(&mut self, resource: &str, field: &str, other: &Report) {
        self.merge_counted();
        self.raw.retain(|k, _| !(k.2 == resource && k.3 == field));
        for (k, n) in other.raw.iter().filter(|(k, _)| k.2 == resource && k.3 == field) {
            *self.raw.entry(k.clone()).or_default() += n;
        }
        for (&(sev, kind, r, f), &n) in other.counted.iter().filter(|(k, _)| k.2 == resource && k.3 == field) {
            *self.raw.entry((sev, kind.into(), r.into(), f.into(), None)).or_default() += n;
        }
    }

    /// An identifier found in `resource.field`: blocking under `reject`, a warning when redacted.
    /// Where the identifier was found is kept where the reader said it ([`Report::reading`]): the
    /// finding names the first file it was found in and its first lines there (the file as the guard
    /// shows it; never the text).
    pub fn identifier(&mut self, policy: guard::Policy, kind: guard::IdentifierKind, resource: &str, field: &str) {
        let sev = if policy == guard::Policy::Reject { Severity::Error } else { Severity::Warning };
        self.finding(sev, kind.as_str(), resource, field, None, 1);
        let (file, line) = &self.place;
        if *line == 0 {
            return;
        }
        let shown = super::guard::shown_path(file);
        let (at, lines) = self
            .identifier_places
            .entry((kind.as_str().to_owned(), resource.to_owned(), field.to_owned()))
            .or_insert_with(|| (shown.clone(), Vec::new()));
        if *at == shown && lines.len() < LINES_KEPT && lines.last() != Some(line) {
            lines.push(*line);
        }
    }

    /// The file and line a reader is at (`line` 0: none), for the findings that name where they were
    /// found ([`Report::identifier`]).
    pub fn reading(&mut self, file: &str, line: u64) {
        if line > 0 && self.place.0 != file {
            self.place.0 = file.to_owned();
        }
        self.place.1 = line;
    }

    /// How findings name an input file: its path under the input's directory (`data/train/0.parquet`,
    /// `part2/Observation.ndjson`: two files of one name in two folders are two), else its file name;
    /// printed through the guard ([`super::guard::shown_path`]).
    pub fn file_label(&self, path: &std::path::Path) -> String {
        match self.root.as_deref().and_then(|r| path.strip_prefix(r).ok()).filter(|r| !r.as_os_str().is_empty()) {
            Some(rel) => rel.to_string_lossy().into_owned(),
            None => path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
        }
    }

    pub fn malformed_line(&mut self, file: &str, line: u64, reason: &'static str) {
        self.malformed_lines(file, line, reason, 1);
    }

    /// `n` malformed lines at `line` (a document that is not read, as many as the resources it held).
    pub fn malformed_lines(&mut self, file: &str, line: u64, reason: &'static str, n: u64) {
        let m = self.malformed.entry(super::guard::shown_path(file)).or_default();
        m.count += n;
        // each reason its own lines (every reason of a file listed all the file's malformed lines)
        let (count, lines) = m.reasons.entry(reason).or_default();
        *count += n;
        if lines.len() < LINES_KEPT {
            lines.push(line);
        }
    }

    pub fn resource(&mut self, resource_type: &str) {
        self.count_resource(reportable::resource_type(resource_type).unwrap_or(reportable::OTHER_RESOURCE_TYPE));
    }

    /// [`Report::resource`] for a type already mapped by [`reportable::resource_type`] (a reader
    /// that maps it while parsing in parallel).
    pub fn count_resource(&mut self, rt: &'static str) {
        debug_assert!(rt == reportable::OTHER_RESOURCE_TYPE || reportable::resource_type(rt) == Some(rt));
        *self.resources.entry(rt).or_default() += 1;
    }

    /// Counts an event: per kind, per code and unit, plausibility, duplicates.
    pub fn event(&mut self, data: &Dataset, e: &Event) {
        *self.events.entry(e.kind.as_str()).or_default() += 1;
        if e.kind == EventKind::Note {
            self.notes += 1;
        }
        let c = e.code as usize;
        if self.code_stats.len() <= c {
            self.code_stats.resize(c + 1, CodeStat::default());
        }
        let st = &mut self.code_stats[c];
        st.count += 1;
        st.kinds[kind_index(e.kind)] += 1;
        if e.unit != NONE {
            *st.units.entry(e.unit).or_default() += 1;
        }
        // a measured value (a coded result's value is its ordinal level, no quantity of the test)
        if !e.value.is_nan() && matches!(e.kind, EventKind::Lab | EventKind::Vital) {
            let code = &data.codes[c];
            if let Some(lab) = *st.lab.get_or_insert_with(|| catalog::lookup(&code.system, &code.code)) {
                let unit = if e.unit == NONE { "" } else { data.units.names[e.unit as usize].as_str() };
                let v = e.value as f64;
                // a value without a unit is read in the catalogue unit (features use it so): checked alike
                if (unit == lab.unit || unit.is_empty()) && (v < lab.plausible.0 || v > lab.plausible.1) {
                    st.implausible += 1;
                }
            }
        }
        // duplicates: the same subject, time, kind, code, value and text
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(e.subject, e.time, e.kind, e.code, e.value.to_bits(), e.unit, e.end), &mut h);
        if e.text != NONE {
            std::hash::Hash::hash(&data.texts.get(e.text as usize), &mut h);
        }
        if !self.seen.insert(std::hash::Hasher::finish(&h)) {
            *self.duplicates.entry(e.kind.as_str()).or_default() += 1;
        }
    }

    /// Turns the counts into the report's codes and findings.
    pub fn finish(&mut self, data: &Dataset, opts: &ReadOptions) {
        // lines whose resourceType is none of FHIR R4's (a typo, another version's type, another
        // format's record): not read, said (found by a tester: nothing said in the text report)
        if let Some(&n) = self.resources.get(super::reportable::OTHER_RESOURCE_TYPE) {
            self.finding(Severity::Warning, "unknown_resource_type", "input", "resourceType", None, n);
        }
        self.merge_counted();
        self.subjects = (data.subjects.len() - data.merged_into.len()) as u64;
        self.codes.clear();
        let mut findings = Vec::new();
        // what is not printed, aggregated: (kind, resource, field) -> (distinct things, events)
        let mut hidden: BTreeMap<(&'static str, &'static str, &'static str), (HashSet<u32>, u64)> = BTreeMap::new();
        let mut hide = |key, what: u32, n: u64| {
            let (set, count) = hidden.entry(key).or_insert_with(|| (HashSet::new(), 0));
            set.insert(what);
            *count += n;
        };
        let mut other_codes: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
        for (i, st) in self.code_stats.iter().enumerate() {
            if st.count == 0 {
                continue;
            }
            let code = &data.codes[i];
            let lab = catalog::lookup(&code.system, &code.code);
            let resource = measured_resource(&st.kinds);
            // each kind's events: under the code where the report may name it as that kind, else
            // counted with the kind's codes outside the catalogue
            let (mut named, mut named_events) = (None, 0);
            for (k, &n) in EventKind::ALL.iter().zip(&st.kinds).filter(|(_, &n)| n > 0) {
                match reportable_code(code, Some(*k)) {
                    Some(c) => {
                        named.get_or_insert(c);
                        named_events += n;
                    }
                    None => {
                        let o = other_codes.entry(k.as_str()).or_default();
                        o.0 += 1;
                        o.1 += n;
                    }
                }
            }
            if let Some((system, c)) = named {
                let units: Vec<String> = st
                    .units
                    .keys()
                    .filter_map(|u| reportable_unit(&data.units.names[*u as usize]))
                    .map(Into::into)
                    .collect();
                self.codes.push(CodeSummary {
                    code: c.into(),
                    system: system.into(),
                    other_units: (st.units.len() - units.len()) as u64,
                    units,
                    count: named_events,
                    name: lab.map(|l| l.name),
                });
            }
            let detail = named.map(|(system, c)| format!("{system}|{c}"));
            if st.units.len() > 1 {
                match &detail {
                    Some(d) => findings.push(finding(
                        Severity::Warning,
                        "unit_conflict",
                        resource,
                        "valueQuantity.unit",
                        st.count,
                        Some(d.clone()),
                    )),
                    None => hide(("unit_conflict", resource, "valueQuantity.unit"), i as u32, st.count),
                }
            }
            if st.implausible > 0 {
                // only catalogue codes are checked for plausibility, so the code is always printable
                findings.push(finding(
                    Severity::Warning,
                    "implausible_value",
                    resource,
                    "valueQuantity.value",
                    st.implausible,
                    detail.clone(),
                ));
            }
            if let (Some(lab), Some(d)) = (lab, &detail) {
                for (u, n) in &st.units {
                    let u = &data.units.names[*u as usize];
                    if u != lab.unit && super::units::is_valid(u) {
                        if let Some(u) = reportable_unit(u) {
                            findings.push(finding(
                                Severity::Info,
                                "non_catalogue_unit",
                                resource,
                                "valueQuantity.unit",
                                *n,
                                Some(format!("{d} in {u}")),
                            ));
                        }
                    }
                }
            }
            for (u, n) in &st.units {
                let name = &data.units.names[*u as usize];
                if !super::units::is_valid(name) {
                    match reportable_unit(name) {
                        Some(r) => findings.push(finding(
                            Severity::Warning,
                            "unknown_unit",
                            resource,
                            "valueQuantity.unit",
                            *n,
                            Some(r.to_owned()),
                        )),
                        None => hide(("unknown_unit", resource, "valueQuantity.unit"), *u, *n),
                    }
                }
            }
        }
        self.other_codes =
            other_codes.into_iter().map(|(kind, (codes, events))| OtherCodes { kind, codes, events }).collect();
        // unknown code systems: one finding per printable system, the others together
        // (resource, field, system) -> events, the resource and field by the kind of the code's events
        let mut systems: BTreeMap<(&'static str, &'static str, &'static str), u64> = BTreeMap::new();
        let mut system_ids: HashMap<&str, u32> = HashMap::new();
        let mut no_system: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for (i, st) in self.code_stats.iter().enumerate() {
            let s = data.codes[i].system.as_str();
            if st.count == 0 || catalog::KNOWN_SYSTEMS.contains(&s) {
                continue;
            }
            // each kind's events under the resource and field they come from
            for (k, &n) in EventKind::ALL.iter().zip(&st.kinds).filter(|(_, &n)| n > 0) {
                let (resource, field) = match k {
                    EventKind::Encounter => ("Encounter", "class.system"),
                    EventKind::Note => ("DocumentReference", "type.coding.system"),
                    _ => ("Observation", "code.coding.system"),
                };
                match reportable::code_system(s) {
                    // a coding without a system (Synthea's Encounter classes): said as such, not as a
                    // system that is not printed
                    _ if s.is_empty() => *no_system.entry((resource, field)).or_default() += n,
                    Some(s) => *systems.entry((resource, field, s)).or_default() += n,
                    None => {
                        let next = system_ids.len() as u32;
                        let id = *system_ids.entry(s).or_insert(next);
                        hide(("unknown_code_system", resource, field), id, n);
                    }
                }
            }
        }
        for ((resource, field, s), n) in systems {
            findings.push(finding(Severity::Warning, "unknown_code_system", resource, field, n, Some(s.to_owned())));
        }
        for ((resource, field), n) in no_system {
            findings.push(finding(Severity::Warning, "no_code_system", resource, field, n, None));
        }
        for ((kind, resource, field), (things, n)) in hidden {
            let (one, many) = match kind {
                "unit_conflict" => ("code outside the catalogue", "codes outside the catalogue"),
                "unknown_unit" => ("unit that is not printed", "units that are not printed"),
                _ => ("code system that is not printed", "code systems that are not printed"),
            };
            let what = if things.len() == 1 { one } else { many };
            findings.push(finding(
                Severity::Warning,
                kind,
                resource,
                field,
                n,
                Some(format!("{} {what}", things.len())),
            ));
        }
        for (kind, n) in &self.duplicates {
            findings.push(finding(Severity::Warning, "duplicate", kind, "-", *n, None));
        }
        for ((kind, res, field), (file, lines)) in self.count_places.drain() {
            let shown = super::guard::shown_path(&file);
            self.identifier_places.entry((kind.into(), res.into(), field.into())).or_insert((shown, lines));
        }
        for ((sev, kind, res, field, detail), n) in &self.raw {
            let mut f = finding(*sev, kind, res, field, *n, detail.clone());
            if let Some((file, lines)) = self.identifier_places.get(&(kind.clone(), res.clone(), field.clone())) {
                (f.file, f.lines) = (Some(file.clone()), lines.clone());
            }
            findings.push(f);
        }
        if let Some(f) = zone_finding(self.zones, opts.time_zone.as_ref(), "input", "time") {
            findings.push(f);
        }
        if self.events.values().all(|&n| n == 0) {
            // nothing to learn from: an input that cannot be trained on (it passed with a warning)
            findings.push(finding(Severity::Error, "no_events", "input", "-", 0, None));
        }
        let total_malformed: u64 = self.malformed.values().map(|m| m.count).sum();
        let fraction = if self.lines > 0 { total_malformed as f64 / self.lines as f64 } else { 0.0 };
        let too_many = total_malformed > 0 && fraction > opts.max_malformed_fraction;
        for (file, m) in &self.malformed {
            for (reason, (n, lines)) in &m.reasons {
                let mut f = finding(
                    if too_many { Severity::Error } else { Severity::Warning },
                    "malformed_line",
                    "-",
                    reason,
                    *n,
                    Some(format!(
                        "{} of all lines malformed, {} tolerated",
                        percent(fraction),
                        percent(opts.max_malformed_fraction)
                    )),
                );
                f.file = Some(file.clone());
                f.lines = lines.clone();
                findings.push(f);
            }
        }
        findings.sort_by(|a, b| {
            (a.severity, &a.kind, &a.resource, &a.field).cmp(&(b.severity, &b.kind, &b.resource, &b.field))
        });
        self.blocking = findings.iter().any(|f| f.severity == Severity::Error);
        self.findings = findings;
        self.codes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.system, &a.code).cmp(&(&b.system, &b.code))));
    }

    /// A finding made after [`Report::finish`] (by `data prepare`, from what it built), added to the
    /// findings as they are.
    pub fn add_finished(&mut self, severity: Severity, kind: &str, resource: &str, field: &str, detail: Option<&str>) {
        self.add_finding(finding(severity, kind, resource, field, 1, detail.map(Into::into)));
    }

    /// [`Report::add_finished`] of a finding made whole (with its count).
    pub fn add_finding(&mut self, f: Finding) {
        self.blocking |= f.severity == Severity::Error;
        self.findings.push(f);
    }

    pub fn malformed_count(&self) -> u64 {
        self.malformed.values().map(|m| m.count).sum()
    }

    /// The report for people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "files {}, lines {}, bytes {}", self.files, self.lines, self.bytes);
        let _ = writeln!(s, "subjects {}", self.subjects);
        let ev: Vec<String> = self.events.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "events: {}", if ev.is_empty() { "none".into() } else { ev.join(", ") });
        let _ = writeln!(s, "notes {}", self.notes);
        let _ = writeln!(s, "codes {} (most frequent first)", self.codes.len());
        for c in self.codes.iter().take(30) {
            let _ = writeln!(
                s,
                "  {:<50} {:<20} {:>10}  {}",
                c.system,
                c.code,
                c.count,
                [c.name.unwrap_or(""), &c.units.join(","), &other_units(c.other_units)].join(" ").trim()
            );
        }
        if self.codes.len() > 30 {
            let _ = writeln!(s, "  ... {} more (--json lists all)", self.codes.len() - 30);
        }
        for o in &self.other_codes {
            let codes = if o.codes == 1 { "code" } else { "codes" };
            let _ = writeln!(s, "  {} {} events under {} {codes} outside the catalogue", o.events, o.kind, o.codes);
        }
        let _ = writeln!(s, "findings {}", self.findings.len());
        s.push_str(&self.render_findings(Severity::Info));
        let _ = writeln!(
            s,
            "{}",
            if self.blocking { "BLOCKING: this input cannot be used for training" } else { "ok: no blocking findings" }
        );
        s
    }
}

impl Report {
    /// The findings of at least `min` severity, one line each (as `data check` prints them).
    pub fn render_findings(&self, min: Severity) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for f in self.findings.iter().filter(|f| f.severity <= min) {
            let sev = match f.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            // `-` stands for no resource or no field; a malformed line's "field" is why it is one
            let _ = match (f.resource.as_str(), f.field.as_str()) {
                ("-", "-") => write!(s, "  {sev:<7} {}", f.kind),
                ("-", why) => write!(s, "  {sev:<7} {} ({why})", f.kind),
                (resource, "-") => write!(s, "  {sev:<7} {} in {resource}", f.kind),
                (resource, field) => write!(s, "  {sev:<7} {} in {resource}.{field}", f.kind),
            };
            let _ = write!(s, ": {}", f.count);
            if let Some(d) = &f.detail {
                let _ = write!(s, " ({d})");
            }
            if let Some(file) = &f.file {
                let lines: Vec<String> = f.lines.iter().map(u64::to_string).collect();
                let _ = write!(s, " at {file} line{} {}", if f.lines.len() > 1 { "s" } else { "" }, lines.join(", "));
            }
            let _ = writeln!(s);
        }
        s
    }
}

fn other_units(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("(+{n} units not printed)")
    }
}

/// The position of a kind in [`EventKind::ALL`] (a [`CodeStat`]'s per-kind counts).
fn kind_index(kind: EventKind) -> usize {
    // ALL lists the kinds in their declaration order
    debug_assert_eq!(EventKind::ALL[kind as usize], kind);
    kind as usize
}

/// The resource a code's units and values are reported under: Observation when any of its events is
/// a measurement (units and values come from those), else its notes' or encounters' resource. It was
/// the kind of the code's first event, so a code's findings moved with the order of the input.
fn measured_resource(kinds: &[u64; EventKind::ALL.len()]) -> &'static str {
    let has = |k: EventKind| kinds[kind_index(k)] > 0;
    if [EventKind::Lab, EventKind::Vital, EventKind::Coded, EventKind::Other].into_iter().any(has) {
        "Observation"
    } else if has(EventKind::Note) {
        "DocumentReference"
    } else {
        "Encounter"
    }
}

/// What the report says of the zones of times (`zones`) read in `read.time_zone` (`zone`): where the key
/// is absent and some times carry a zone (`Z` or an offset) while others carry none, a warning (those
/// were read as UTC: hours off the others, on the wrong side of a prediction time); where it is given,
/// how many times were read in it.
pub fn zone_finding(
    zones: super::time::Zones,
    zone: Option<&super::time::Zone>,
    resource: &str,
    field: &str,
) -> Option<Finding> {
    match zone {
        None if zones.mixed() => Some(finding(
            Severity::Warning,
            "time_without_zone",
            resource,
            field,
            zones.local,
            Some(format!("read as UTC beside {} times with a zone: name their zone with read.time_zone", zones.zoned)),
        )),
        Some(z) if zones.local > 0 => Some(finding(
            Severity::Info,
            "time_zone",
            resource,
            field,
            zones.local,
            Some(format!("times without a zone read in {}", z.name())),
        )),
        _ => None,
    }
}

pub(crate) fn finding(
    severity: Severity,
    kind: &str,
    resource: &str,
    field: &str,
    count: u64,
    detail: Option<String>,
) -> Finding {
    Finding {
        severity,
        kind: kind.into(),
        resource: resource.into(),
        field: field.into(),
        count,
        detail,
        file: None,
        lines: vec![],
    }
}

/// A fraction as a percentage a reader takes in at a glance (`0.5` is `50.0%`, `2e-7` is `2.0e-5%`).
fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p >= 0.1 {
        format!("{p:.1}%")
    } else {
        format!("{p:.1e}%")
    }
}
