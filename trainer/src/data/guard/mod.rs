//! The identifier guard: finds direct identifiers that a pseudonymized export must not hold.
//!
//! Structured fields (Patient name, telecom, address, birthDate, identifier, contact; a reference's
//! `display`, which often carries a name) are found by the readers. Free text (notes, string values,
//! narratives) is scanned here, one verb per file:
//! - [`number`]: 12-digit Individual Numbers (My Number) whose check digit is valid (ungrouped, 4-4-4,
//!   3-3-3-3, with hyphens, spaces, dots or slashes, also glued to letters); phone numbers: Japanese
//!   numbers (0 + 9 or 10 digits grouped by hyphens, spaces, dots, `・`, `〜`, spaced hyphens or
//!   brackets; ungrouped 10-digit landlines and 11-digit 050/070/080/090 mobiles; glued to `TEL`/`FAX`),
//!   international numbers (+ and 8 to 15 digits), North American (3-3-4) numbers; each also after a
//!   list number that joins its run (`(2) 090-1234-5678`, `1) 03-1234-5678`, `3. 0312345678`,
//!   `1.090-1234-5678` when the number after the period is grouped by a mark; after a word's period,
//!   `No.1.090-1234-5678`, `ID.0312345678`);
//! - [`email`]: e-mail addresses, also with non-ASCII local parts or domains and a full-width `＠`;
//! - [`name`]: names introduced by a cue (氏名, 患者名, 名前, `Name:`), before an honorific (様, さん,
//!   殿, 君, 氏), or after a title (Mr., Mrs., Ms., Dr.);
//! - [`address`]: Japanese addresses (prefecture + municipality, 丁目/番地/番-号 patterns, 〒 postal
//!   codes) and English street addresses (number + capitalized words + street suffix);
//! - [`subject`]: a subject's own structured identifiers (from its Patient resource) searched for in
//!   that subject's notes;
//! - [`vocab`]: the filter that keeps identifiers out of a tokenizer trained in the node.
//!
//! [`scan`] runs the four scanners of free text in one pass: it steps over the chars no scanner can
//! find anything from (most of a note) and calls each scanner's check at the others, with the state
//! the scanner would have there read back from the text before it. Each scanner's own pass
//! (`number::scan`, ...) stays as the plain reference; the tests hold [`scan`] to the four of them.
//! Every check looks at a bounded window around its position, so the cost is linear in the text (a
//! counter of the characters examined proves it in the tests). Full-width digits, letters and
//! separators (common in Japanese text) count as their ASCII forms. A finding says what kind of
//! identifier was found and where; the matched text is never kept or printed.

pub mod address;
pub mod email;
pub mod name;
pub mod number;
pub mod subject;
pub mod vocab;

use std::ops::Range;

pub use number::my_number_valid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Name,
    Telecom,
    Address,
    BirthDate,
    MyNumber,
    Phone,
    Email,
    /// `Patient.identifier`: a medical record number or another id the export should not hold
    PatientIdentifier,
    /// `Patient.photo` (an Attachment): a face image identifies as a name does (HIPAA Safe Harbor
    /// lists full-face photographs); found in structured fields, and in free text only as a person's
    /// own photo title ([`subject`]), never by the scanners
    Photo,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Name => "name",
            IdentifierKind::Telecom => "telecom",
            IdentifierKind::Address => "address",
            IdentifierKind::BirthDate => "birth_date",
            IdentifierKind::MyNumber => "my_number",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Email => "email",
            IdentifierKind::PatientIdentifier => "patient_identifier",
            IdentifierKind::Photo => "photo",
        }
    }
}

/// What to do with an identifier: refuse the input (default), or remove it and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    Reject,
    Redact,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(Policy::Reject),
            "redact" => Ok(Policy::Redact),
            _ => Err(format!("unknown identifier policy {s:?} (expected reject or redact)")),
        }
    }
}

/// A char with full-width forms folded to ASCII (digits, letters, separators, `＠`).
pub(crate) fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        // (the half-width prolonged sound mark too: `090ｰ1234ｰ5678`, found by a tester)
        '−' | '‐' | '‑' | '‒' | '–' | '—' | 'ー' | '―' | 'ｰ' => '-',
        '　' => ' ',
        '〜' => '~',
        _ => c,
    }
}

/// A path inside an input (relative to it), or a data file's name, as a report or an error may print
/// it: each component whose words are not all words of an export's file names ([`EXPORT_VOCABULARY`],
/// a FHIR resource type, a letter), or that holds an identifier the guard finds, an `@`, more than 6
/// digits, or anything but printable ASCII, is shown as `(a name that is not printed)`. An export's file
/// names are its writer's: per-patient files (`patient_<id>.ndjson`, `Suzuki.csv`, `yamada_hanako.csv`,
/// `YAMADA-HANAKO.csv`) name patients, and no rule of form tells a name from a word: only words known
/// to be an export's are shown (a name of other words is not printed, `kyoto_labs.csv` too).
pub fn shown_path(rel: &str) -> String {
    shown_components(rel, |c| known_words(c) && no_person(c, true))
}

/// A path the user gave (an input's own directory, a label file, a config) as an error may print it:
/// each component as [`shown_path`] shows it where it reads as a person's name or a patient number,
/// else as it is (a user's directories are theirs: `/home/tanaka/project` is printed, `exports/Smith_John`
/// is not).
pub fn shown_user_path(path: &str) -> String {
    // (a space only where every word is known: `labHanako Suzukiels.csv` holds a name the word rules
    // do not see, fuzz seed 80)
    shown_components(path, |c| no_person(c, false))
}

/// A component [`plain`] that reads as no person's name and no patient number.
fn no_person(c: &str, spaces: bool) -> bool {
    plain(c, spaces) && !person_like(c) && (c.starts_with('.') || !id_like(c))
}

fn shown_components(path: &str, shown: impl Fn(&str) -> bool) -> String {
    path.split('/')
        .map(|c| if c.is_empty() || shown(c) { c.to_owned() } else { "(a name that is not printed)".to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

/// A component of printable ASCII (a space too where `spaces`), at most 6 digits, no `@`, nothing the
/// scan finds.
fn plain(c: &str, spaces: bool) -> bool {
    c.len() <= 128
        && c.bytes().all(|b| (spaces && b == b' ') || b.is_ascii_graphic())
        && c.bytes().filter(u8::is_ascii_digit).count() <= 6
        // a number of 4 or more digits is a patient's or a case's (`patient/123456/`, `7731.csv`), but a
        // part's (`0001`) or a year's (`2024`)
        && c.split(|ch: char| !ch.is_ascii_digit()).all(|run| {
            run.len() < 4 || run.starts_with('0') || (run.len() == 4 && ("1900".."2100").contains(&run))
        })
        // (an e-mail address the scan does not see whole, cut or run into the next word:
        // `taro.yamada@example.jpabels.csv`; a data file's name holds no `@`)
        && !c.contains('@')
        && scan(c).is_empty()
}

/// The words of export file names (lower case): what data files, their parts, splits, sites and formats
/// are called. A name of these words, numbers and single letters is printed.
const EXPORT_VOCABULARY: &[&str] = &[
    "admission",
    "admissions",
    "admit",
    "all",
    "archive",
    "backup",
    "batch",
    "binary",
    "bulk",
    "by",
    "chart",
    "chartevents",
    "chunk",
    "chunks",
    "clean",
    "cleaned",
    "clinic",
    "code",
    "codes",
    "cohort",
    "concept",
    "concepts",
    "config",
    "copy",
    "csv",
    "cp",
    "data",
    "dataset",
    "datasets",
    "day",
    "daily",
    "deleted",
    "delta",
    "demo",
    "dev",
    "diagnoses",
    "diagnosis",
    "discharge",
    "document",
    "documents",
    "ed",
    "eicu",
    "emergency",
    "en",
    "encounter",
    "encounters",
    "euc",
    "event",
    "events",
    "export",
    "exports",
    "extract",
    "file",
    "files",
    "final",
    "fhir",
    "full",
    "gz",
    "heldout",
    "held",
    "history",
    "hosp",
    "hospital",
    "hospitals",
    "icu",
    "id",
    "ids",
    "in",
    "incremental",
    "inpatient",
    "input",
    "ja",
    "jis",
    "jp",
    "json",
    "jsonl",
    "kensa",
    "lab",
    "labels",
    "label",
    "labevents",
    "laboratory",
    "labs",
    "latest",
    "list",
    "manifest",
    "map",
    "mapping",
    "measurement",
    "measurements",
    "meds",
    "merged",
    "meta",
    "metadata",
    "mimic",
    "month",
    "monthly",
    "ndjson",
    "new",
    "note",
    "noteevents",
    "notes",
    "obs",
    "observation",
    "observations",
    "of",
    "old",
    "omop",
    "out",
    "outpatient",
    "output",
    "page",
    "parquet",
    "part",
    "parts",
    "patient",
    "patients",
    "person",
    "persons",
    "prediction",
    "predictions",
    "prepared",
    "radiology",
    "raw",
    "record",
    "records",
    "report",
    "reports",
    "result",
    "results",
    "sample",
    "samples",
    "set",
    "shard",
    "shards",
    "shift",
    "signs",
    "since",
    "site",
    "sites",
    "sjis",
    "split",
    "splits",
    "subject",
    "subjects",
    "synthea",
    "synthetic",
    "table",
    "tables",
    "test",
    "tests",
    "text",
    "time",
    "times",
    "tmp",
    "to",
    "train",
    "training",
    "tsv",
    "tuning",
    "txt",
    "unit",
    "units",
    "update",
    "updates",
    "utf",
    "val",
    "valid",
    "validation",
    "vital",
    "vitals",
    "ward",
    "week",
    "weekly",
    "xml",
    "year",
    "zip",
    "itemid",
    "itemids",
    "sheet",
    "sheets",
    "wide",
    "long",
    "log",
    "logs",
    "zst",
    // a model's files (a tokenizer a config names: found by a tester, its name was hidden)
    "tokenizer",
    "vocab",
    "merges",
    "special",
    "tokens",
    "model",
    "bz2",
    "xz",
    "tar",
    "dump",
    "db",
    "sql",
    "sqlite",
    "xls",
    "xlsx",
    "excel",
    "readme",
    "license",
    "success",
    "crc",
    "md",
    "toml",
    "yaml",
    "yml",
    "schema",
    "index",
    "stats",
    "summary",
    "extra",
    "misc",
    "other",
    "others",
];

/// Whether every word of letters in `c` is an export's ([`EXPORT_VOCABULARY`], a FHIR resource type, any
/// case; a word of one letter): split at what is not a letter and where a lower-case letter meets a
/// capital (`LabResults`).
fn known_words(c: &str) -> bool {
    let known = |w: &str| {
        w.len() == 1
            || EXPORT_VOCABULARY.iter().any(|v| v.eq_ignore_ascii_case(w))
            || crate::data::reportable::FHIR_R4_RESOURCE_TYPES.iter().any(|r| r.eq_ignore_ascii_case(w))
    };
    c.split(|ch: char| !ch.is_ascii_alphabetic()).filter(|w| !w.is_empty()).all(|w| {
        if known(w) {
            return true;
        }
        // camel case: each part known
        let b = w.as_bytes();
        let mut start = 0;
        for i in 1..=b.len() {
            if i == b.len() || (b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase()) {
                if !known(&w[start..i]) {
                    return false;
                }
                start = i;
            }
        }
        true
    })
}

/// Whether a file name holds a word of letters then three or more digits that is not an export's own
/// (`part0001`, `labs2024`, `v2`): a patient number's form (`PT7731_notes.csv`, `A12345.csv`).
fn id_like(name: &str) -> bool {
    const EXPORT_PREFIXES: &[&str] = &[
        "batch", "chunk", "data", "export", "file", "lab", "labs", "meds", "note", "notes", "obs", "output", "page",
        "part", "r", "sample", "shard", "split", "test", "train", "utf", "v", "vitals",
    ];
    // letters then 3 or more digits, as a patient number is written (random names, `tmpX9k27Q`, mix
    // them; a hidden name, `.tmpab1234`, is a tool's, and is not asked)
    name.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        let letters = w.bytes().take_while(u8::is_ascii_alphabetic).count();
        let digits = w.len() - letters;
        letters > 0
            && digits >= 3
            && w.as_bytes()[letters..].iter().all(u8::is_ascii_digit)
            && !EXPORT_PREFIXES.contains(&w[..letters].to_ascii_lowercase().as_str())
    })
}

/// Whether a file name reads as a person's name: two or more capitalized words (`Smith_John.json`,
/// `Peter-Chalmers.ndjson`, Synthea's `Given_Family`) that are not words of an export's file names (a
/// FHIR resource type, `Lab`, `Results`, ...). A name of one word, or of lower-case words, is shown.
fn person_like(name: &str) -> bool {
    const EXPORT_WORDS: &[&str] = &[
        "All", "Batch", "Bulk", "Codes", "Data", "Demo", "Events", "Export", "File", "Files", "Lab", "Labels", "Labs",
        "Meds", "Metadata", "New", "Notes", "Old", "Output", "Part", "Results", "Sample", "Shard", "Splits", "Test",
        "Tests", "Train", "Vitals",
    ];
    let capitalized = name
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| {
            w.len() >= 2
                && w.starts_with(|c: char| c.is_ascii_uppercase())
                && w[1..].bytes().all(|b| b.is_ascii_lowercase())
                && !EXPORT_WORDS.contains(w)
                && crate::data::reportable::resource_type(w).is_none()
        })
        .count();
    capitalized >= 2
}

/// Whether `c` is a default-ignorable code point (Unicode's Default_Ignorable_Code_Point): drawn as
/// nothing (zero-width space and joiners, soft hyphen, word joiner, BOM, bidi controls, variation
/// selectors, tags), common in text pasted from web pages and word processors.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Free text as it is scanned and kept: without its invisible characters ([`invisible`]). One of them
/// inside a phone number, an e-mail address or a name cue (`090\u{200B}-1234-5678`) hid it from every
/// scanner, and a redacted note then kept it; they carry nothing a model should read. Every reader
/// passes its notes through this before [`scan`], so that the findings' spans are in the text kept.
pub fn visible(text: String) -> String {
    if !text.chars().any(invisible) {
        return text;
    }
    text.chars().filter(|&c| !invisible(c)).collect()
}

/// One finding: its kind and byte span in the text.
pub type Finding = (IdentifierKind, Range<usize>);

/// Every identifier in `text`, with its byte span, sorted by start, without overlaps.
pub fn scan(text: &str) -> Vec<Finding> {
    scan_counted(text).0
}

// the scanners, as bits of a mask
const EMAIL: u8 = 1;
const NUMBER: u8 = 2;
const NAME: u8 = 4;
const ADDRESS: u8 = 8;

/// The scanners that find something from `c`, as a mask (each scanner says where it looks).
fn scanners(c: char) -> u8 {
    let bit = |yes: bool, b: u8| if yes { b } else { 0 };
    bit(email::may_start(c), EMAIL)
        | bit(number::may_start(c), NUMBER)
        | bit(name::may_start(c), NAME)
        | bit(address::may_start(c), ADDRESS)
}

/// [`scanners`] of the ASCII chars, and whether any scanner finds something from each char of the
/// Basic Multilingual Plane (one bit per char, 8 KiB): built once, from the scanners' own tests.
struct Tables {
    ascii: [u8; 128],
    bmp: Vec<u64>,
}

static TABLES: std::sync::LazyLock<Tables> = std::sync::LazyLock::new(|| {
    let mut bmp = vec![0u64; 0x10000 / 64];
    for (cp, c) in (0..0x10000u32).filter_map(|cp| char::from_u32(cp).map(|c| (cp, c))) {
        if scanners(c) != 0 {
            bmp[cp as usize / 64] |= 1 << (cp % 64);
        }
    }
    Tables { ascii: std::array::from_fn(|b| scanners(b as u8 as char)), bmp }
});

/// [`scan`], and the number of characters the scanners examined: at most a small constant times the
/// text's length, whatever the text (the tests hold it to that, since a timed test would be flaky).
pub fn scan_counted(text: &str) -> (Vec<Finding>, u64) {
    let tables = &*TABLES;
    // each scanner's findings apart, merged in the order the four passes had (ties keep the first)
    let (mut emails, mut numbers, mut names, mut addresses) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ops = 0u64;
    // the number scan resumes after the last run it read, the address scan after its last finding
    let mut number_from = 0;
    let mut address_from = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // step over the chars no scanner finds anything from; `i` is always at a char's first byte
        let b = bytes[i];
        let (c, mask) = if b < 0x80 {
            let mask = tables.ascii[b as usize];
            if mask == 0 {
                i += 1;
                continue;
            }
            (b as char, mask)
        } else {
            let (cp, len) = match b {
                0xC0..=0xDF => (((b & 0x1F) as u32) << 6 | (bytes[i + 1] & 0x3F) as u32, 2),
                0xE0..=0xEF => {
                    (((b & 0x0F) as u32) << 12 | ((bytes[i + 1] & 0x3F) as u32) << 6 | (bytes[i + 2] & 0x3F) as u32, 3)
                }
                _ => (u32::MAX, 4),
            };
            if cp != u32::MAX && tables.bmp[cp as usize / 64] & (1 << (cp % 64)) == 0 {
                i += len;
                continue;
            }
            let Some(c) = text[i..].chars().next() else { break };
            (c, scanners(c))
        };
        let next = i + c.len_utf8();
        if mask == 0 {
            i = next;
            continue;
        }
        ops += 1;
        let prev = text[..i].chars().next_back();
        if mask & EMAIL != 0 {
            if let Some(r) = email::email_at(text, i, c.len_utf8(), &mut ops) {
                emails.push((IdentifierKind::Email, r));
            }
        }
        if mask & NUMBER != 0 && i >= number_from {
            let before = number::Before::at(text, i);
            if let Some((end, _)) = number::run_at(text, i, fold(c), next, &before, &mut numbers, &mut ops) {
                number_from = end;
            }
        }
        if mask & NAME != 0 {
            name::at(text, i, c, prev, &mut names, &mut ops);
        }
        if mask & ADDRESS != 0 && i >= address_from {
            if let Some(r) = address::at(text, i, c, prev, &mut ops) {
                address_from = r.end;
                addresses.push((IdentifierKind::Address, r));
            }
        }
        i = next;
    }
    emails.append(&mut numbers);
    emails.append(&mut names);
    emails.append(&mut addresses);
    (merge(emails), ops)
}

/// The four scanners' own passes, one after the other: the plain reference [`scan`] is held to.
pub fn scan_four_passes(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut ops = 0u64;
    email::scan(text, &mut found, &mut ops);
    number::scan(text, &mut found, &mut ops);
    name::scan(text, &mut found, &mut ops);
    address::scan(text, &mut found, &mut ops);
    merge(found)
}

/// Sorts findings by start and drops any that overlap an earlier (or, at the same start, longer) one.
pub(crate) fn merge(mut found: Vec<Finding>) -> Vec<Finding> {
    found.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(b.1.end.cmp(&a.1.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        match out.last() {
            Some(last) if f.1.start < last.1.end => {}
            _ => out.push(f),
        }
    }
    out
}

/// `text` with every identifier replaced by `[KIND]`.
pub fn redact(text: &str, found: &[(IdentifierKind, Range<usize>)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (k, r) in found {
        if r.start < at {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push('[');
        out.push_str(&k.as_str().to_ascii_uppercase());
        out.push(']');
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_values_and_keeps_the_rest() {
        let t = "患者 090-1234-5678, mail a.b@example.com 以上";
        let f = scan(t);
        assert_eq!(redact(t, &f), "患者 [PHONE], mail [EMAIL] 以上");
    }

    /// Pieces of text (between `|`) that start, continue, glue or break identifiers of every kind.
    const PIECES: &str = concat!(
        "0|1|2|3|4|5|6|7|8|9|０|９|１２|090|1234|5678|03|-|-|.|.|・|･|~|〜|/|(|)|（|）| | |　|−|ー|‐| - |+|＋|",
        "@|＠|_|,|:|：|=|a|x|T|E|L|tel|TEL|Tel.|tel:|fax|phone|mobile|cell|ＴＥＬ|．|n|N|name|Name:|",
        "NAME |M|D|P|Mr|Mrs|Ms|Miss|Dr|Prof|Mr. |Dr |John|Smith|O'Neil|Anne-Marie|Street|St|St.|",
        "Ave|Road|Way|Main|W|12|221|Baker|様|さん|殿|君|氏|先生|医師|ちゃん|先|医|さ|ち|山田|太郎|花子|患者|家族|看護師|同|々|患者名|",
        "氏名|名前|患|名|東京都|神奈川県|北海道|大阪府|横浜市|中区|山下町|本町|町|市|区|村|条|通|丁|丁目|番地|番|号|一|二|十|〒|郵便番号|天神|の|ノ|ヶ|",
        "スミス|ヘルパー|です|に|は|より|電話|example|com|jp|.jp|例え|ｱｲｳ|\n|é|ß|Ａ|ａ|％|＿|，|ID|lot|10:30|2024-03-05|",
        "1.23|mg/dL|😀|a.b@example.com|連絡先taro@例え.jp|090-1234-5678|03-1234-5678|0312345678|",
        "09012345678|+81 90|(03)|(03) 5555 6473|(090) |123456789018|1234 5678 9018|555-123-4567|TEL0312345678|",
        "(2) |1) |３．|（２）|1.|1.090|3.5-4.0|No.|Ｎｏ．|e.g.|MRN|MRN: |mrn#|患者ID|カルテ番号|ＭＲＮ|Patient ID |DOB |",
        "born |生年月日|昭和|S|Apr|April |04/17/1961|1961年|4月|17日|19610417|mRNA|が|、|誕生日|MRN_|DOB_|Patient_ID_|",
        "birth_date|17Apr1961|1234567",
    );

    /// The one pass finds exactly what the four scanners' own passes find, on random text made of the
    /// pieces above (every kind is found often in it), on the labelled recall set and on the demo notes.
    #[test]
    fn the_one_pass_finds_what_the_four_passes_find() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: Vec<&str> = PIECES.split('|').collect();
        let mut kinds = std::collections::BTreeMap::new();
        for _ in 0..50_000 {
            let len = next() % 40;
            let text: String = (0..len).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            let found = scan(&text);
            assert_eq!(found, scan_four_passes(&text), "{text:?}");
            for (k, _) in found {
                *kinds.entry(k).or_insert(0) += 1;
            }
        }
        for k in [IdentifierKind::Phone, IdentifierKind::MyNumber, IdentifierKind::Email, IdentifierKind::Name] {
            assert!(kinds.get(&k).copied().unwrap_or(0) >= 1000, "{k:?} too rare to test: {kinds:?}");
        }
        // (the numbers a cue names need the cue and the number in a row: rarer)
        for k in [IdentifierKind::PatientIdentifier, IdentifierKind::BirthDate] {
            assert!(kinds.get(&k).copied().unwrap_or(0) >= 100, "{k:?} too rare to test: {kinds:?}");
        }
        assert!(kinds.get(&IdentifierKind::Address).copied().unwrap_or(0) >= 1000, "{kinds:?}");
        for line in include_str!("../../../tests/guard_recall/labelled.tsv").lines() {
            let text = line.split_once('\t').map_or(line, |(_, t)| t);
            assert_eq!(scan(text), scan_four_passes(text), "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        crate::data::demo::write(dir.path(), 100, 1).unwrap();
        let opts = crate::data::ReadOptions { identifiers: Policy::Redact, ..Default::default() };
        let (data, _) = crate::data::read(dir.path(), &opts).unwrap();
        assert!(data.texts.len() > 100);
        for text in &data.texts {
            assert_eq!(scan(text), scan_four_passes(text));
        }
    }

    #[test]
    fn overlapping_findings_keep_the_first_and_longest() {
        let f = merge(vec![
            (IdentifierKind::Phone, 5..10),
            (IdentifierKind::Email, 0..12),
            (IdentifierKind::Name, 12..14),
            (IdentifierKind::Address, 13..20),
        ]);
        assert_eq!(f, vec![(IdentifierKind::Email, 0..12), (IdentifierKind::Name, 12..14)]);
    }
}
