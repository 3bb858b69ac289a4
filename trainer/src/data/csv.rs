//! CSV input: event files `subject_id,time,code,value,unit` and note files `subject_id,time,text`,
//! told apart by their header. `code` is `system|code`, a code of the system a `system` column names, or
//! a bare code: a catalogue test name such as `creatinine` or a catalogue LOINC code (`2160-0`) is that
//! LOINC code, a catalogue JLAC10 code is JLAC10, any other is of the system `medtrain:csv`. A file with
//! neither `code` nor `value` is wide: one column per test, its header the test's bare code (or a code
//! `read.code_map` maps) with its unit in brackets, each filled cell an event. `time` is
//! a FHIR date/dateTime or a spreadsheet's `2024/01/05 8:30`. A CSV directory is every `*.csv` in it,
//! in name order. Files are decoded and split as [`Table`] says.

use super::check::Severity;
use super::{catalog, charset, guard, time, DataError, EventKind, ReadOptions, Rec, Result, Sink};
use std::borrow::Cow;
use std::path::Path;

enum Layout {
    Events {
        subject: usize,
        time: usize,
        code: usize,
        value: usize,
        /// MEDS' `text_value`: a text result, read when `value` is empty
        text_value: Option<usize>,
        /// the code system of `code`, where a column gives it
        system: Option<usize>,
        unit: Option<usize>,
        /// a `text` column beside `code` (labs and notes in one file): a row without a value whose
        /// `text` is filled is a note under its code; the text of a row with a value is scanned
        note: Option<usize>,
        columns: usize,
    },
    Notes {
        subject: usize,
        time: usize,
        text: usize,
        /// the note's type, where a `code` column gives it
        code: Option<usize>,
        columns: usize,
    },
    /// One column per test, as spreadsheets and many hospital extracts are: `subject_id,time,
    /// creatinine,crp (mg/dL),2160-0,...`; each filled cell an event of its column's test.
    Wide { subject: usize, time: usize, tests: Vec<WideColumn>, columns: usize },
}

/// A test column of a wide file: where it is, the code its header names, the unit it gives.
struct WideColumn {
    at: usize,
    system: Cow<'static, str>,
    code: String,
    unit: Option<String>,
    vital: bool,
}

impl Layout {
    /// The header's field count, which every row must have.
    fn columns(&self) -> usize {
        match *self {
            Layout::Events { columns, .. } | Layout::Notes { columns, .. } | Layout::Wide { columns, .. } => columns,
        }
    }

    /// Whether a record holds rows of the file inside a field: a quote opened in its last column and
    /// closed rows later (or at a lone quote) reads those rows into it with the right field count, so
    /// other rows (other patients') would be one note. A line of a field is taken for a row where it
    /// splits at the delimiter into at least a row's fields, with a subject (no spaces) and a time
    /// written as the record's own (the same characters but for digits: an export writes every time
    /// alike, prose seldom writes one so between delimiters).
    fn swallows_rows(&self, rec: &csv::StringRecord, delimiter: u8) -> bool {
        let (Layout::Events { subject, time, columns, .. }
        | Layout::Notes { subject, time, columns, .. }
        | Layout::Wide { subject, time, columns, .. }) = *self;
        let shape = |t: &str| -> Vec<u8> { t.bytes().map(|b| if b.is_ascii_digit() { b'9' } else { b }).collect() };
        let Some(own) = rec.get(time).filter(|t| t.len() >= 8 && parse_time(t).is_some()).map(shape) else {
            return false;
        };
        rec.iter().filter(|f| f.contains('\n')).any(|f| {
            f.split('\n').skip(1).any(|line| {
                let parts: Vec<&str> = line.split(delimiter as char).collect();
                parts.len() >= columns
                    && parts.get(subject).is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    && parts.get(time).is_some_and(|t| shape(t) == own && parse_time(t).is_some())
            })
        })
    }
}

/// A wide file's column header as a test: a catalogue test's name, LOINC or JLAC10 code, or a local
/// code `read.code_map` maps (without a system), optionally followed by its unit in brackets or
/// parentheses (`creatinine (mg/dL)`, `CRP[mg/dL]`, `Cre（mg/dL）`); `None` for any other column.
fn wide_column(at: usize, raw: &str, map: Option<&super::code_map::CodeMap>) -> Option<WideColumn> {
    let raw = raw.trim();
    let mut name = raw;
    let mut unit = None;
    for (open, close) in [('(', ')'), ('[', ']'), ('（', '）'), ('［', '］')] {
        if let Some(inner) = raw.strip_suffix(close) {
            if let Some(i) = inner.rfind(open) {
                let u = inner[i + open.len_utf8()..].trim();
                if !u.is_empty() && i > 0 {
                    (name, unit) = (inner[..i].trim(), Some(u.to_owned()));
                    break;
                }
            }
        }
    }
    // `Total Bilirubin`, `total-bilirubin`: the catalogue's `total_bilirubin`
    let lower = name.to_lowercase();
    let snake = catalog::folded_name(name);
    let (system, code) = [name, lower.as_str(), snake.as_str()]
        .into_iter()
        .map(bare_code)
        .find(|(system, _)| system != "medtrain:csv")
        .map(|(s, c)| (s, c.into_owned()))
        .or_else(|| map.and_then(|m| m.get("medtrain:csv", name)).map(|_| ("medtrain:csv".into(), name.to_owned())))?;
    let vital = catalog::lookup(&system, &code).is_some_and(|l| l.vital);
    Some(WideColumn { at, system, code, unit, vital })
}

/// The columns of CSV input where its files do not use medtrain's names (`[read.columns]`, `data check
/// --columns`): each key a role, its value the header name the files give it, in any case (MIMIC-IV's
/// `labevents.csv.gz`: `time = "charttime"`, `code = "itemid"`, `value = "valuenum"`, `text_value =
/// "value"`, `unit = "valueuom"`). A role named here is read from that column only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub subject_id: Option<String>,
    pub time: Option<String>,
    pub code: Option<String>,
    pub value: Option<String>,
    pub text_value: Option<String>,
    pub unit: Option<String>,
    pub system: Option<String>,
    pub text: Option<String>,
}

impl Columns {
    pub const ROLES: [&'static str; 8] =
        ["subject_id", "time", "code", "value", "text_value", "unit", "system", "text"];

    /// The names by role, in [`Columns::ROLES`]' order.
    fn names_mut(&mut self) -> [&mut Option<String>; 8] {
        let c = self;
        [
            &mut c.subject_id,
            &mut c.time,
            &mut c.code,
            &mut c.value,
            &mut c.text_value,
            &mut c.unit,
            &mut c.system,
            &mut c.text,
        ]
    }

    /// The header name a role is read from, where one is given (trimmed, lower-cased as headers are).
    pub fn get(&self, role: &str) -> Option<String> {
        let c = self;
        let names = [&c.subject_id, &c.time, &c.code, &c.value, &c.text_value, &c.unit, &c.system, &c.text];
        let i = Columns::ROLES.iter().position(|r| *r == role)?;
        names[i].as_deref().map(|n| n.trim().to_ascii_lowercase())
    }

    /// `role=name,role=name` (the flag's form).
    pub fn parse(s: &str) -> std::result::Result<Columns, String> {
        let mut c = Columns::default();
        for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (role, name) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not role=name"))?;
            let i = Columns::ROLES
                .iter()
                .position(|r| *r == role.trim())
                .ok_or_else(|| format!("{:?} is no role: one of {}", role.trim(), Columns::ROLES.join(", ")))?;
            let names = c.names_mut();
            let slot = &mut *names[i];
            if slot.is_some() {
                return Err(format!("{}: given twice", Columns::ROLES[i]));
            }
            *slot = Some(name.trim().to_owned());
        }
        c.validate().map_err(|(role, m)| format!("{role}: {m}"))?;
        Ok(c)
    }

    /// Each name non-empty, no column named for two roles; the error names the role.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for role in Columns::ROLES {
            let Some(name) = self.get(role) else { continue };
            if name.is_empty() {
                return Err((role, "names no column (an empty name)".into()));
            }
            if let Some((other, _)) = seen.iter().find(|(_, n)| *n == name) {
                return Err((role, format!("names the column {other} also names")));
            }
            seen.push((role, name));
        }
        Ok(())
    }
}

/// CSV names for the fields the shared QA report names as FHIR's ([`super::name_fields`]): the columns
/// `value`, `unit`, `system` (or the code's `system|code` form) and `text`.
pub(super) fn name_fields(report: &mut super::Report) {
    let names = super::FieldNames {
        resource: "csv",
        value: "value",
        unit: "unit",
        system: "system",
        text: "text",
        duplicate: "the same subject_id, time, code and value",
    };
    super::name_fields(report, &names, |_, _, _| None);
}

/// The columns of a CSV file from its header (names trimmed and lower-cased by [`Table::open`]):
/// notes when it has `text` and no `code` (beside a `code`, `text` is the notes of a file of labs and notes), else events; MEDS' names `numeric_value` (for `value`) and `text_value`
/// are read too, and a `system` column naming each code's system; `read.columns` names others.
fn layout(path: &Path, table: &Table, opts: &ReadOptions) -> Result<Layout> {
    let (header, columns) = (&table.header, &opts.columns);
    let col = |n: &str| header.iter().position(|h| h == n);
    let shown = |h: &str| reportable_column(h, columns).unwrap_or_else(|| "(a name that is not printed)".into());
    // (one pass: a header of 100,000 columns took 39 s to compare pairwise); unnamed columns (Excel's
    // trailing empty header cells) are no role's and may repeat
    let mut first = std::collections::HashMap::with_capacity(header.len());
    for (i, h) in header.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
        if let Some(earlier) = first.insert(h, i) {
            return Err(DataError::Line {
                path: path.into(),
                line: table.header_line,
                msg: format!("the header names column {} twice (columns {} and {})", shown(h), earlier + 1, i + 1),
            });
        }
    }
    // a role's column: the one read.columns names, else the first of its own names the header has
    let find = |role: &str, names: &[&str]| match columns.get(role) {
        Some(n) => col(&n),
        None => names.iter().find_map(|n| col(n)),
    };
    let need = |role: &'static str, names: &[&str]| {
        find(role, names).ok_or_else(|| {
            let wanted = match columns.get(role) {
                Some(n) => format!("{n:?} column (read.columns.{role})"),
                None => format!(
                    "{:?} column{} (or name it with read.columns.{role})",
                    names[0],
                    if names.len() > 1 { format!(" (or {:?})", &names[1..]) } else { String::new() }
                ),
            };
            DataError::Line {
                path: path.into(),
                line: table.header_line,
                msg: format!(
                    "the header has no {wanted} (the header read: {})",
                    header_summary(header, |h| reportable_column(h, columns))
                ),
            }
        })
    };
    // notes: a `text` column, and no `code` and value columns (`code` alone is the notes' type; beside a
    // code and a value, `text` is the notes of a file of labs and notes)
    let labs_too = find("code", &["code"]).is_some()
        && (find("value", &["value", "numeric_value"]).is_some() || find("text_value", &["text_value"]).is_some());
    if find("text", &["text"]).is_some() && !labs_too {
        // results beside the notes without a code column (a value column, or a column per test): read as
        // notes, every result was dropped with a word at info level
        let (subject, time) = (find("subject_id", &["subject_id"]), find("time", &["time", "charttime"]));
        let roles: Vec<usize> =
            Columns::ROLES.iter().filter_map(|r| find(r, &[r])).chain(subject).chain(time).collect();
        let tests = table
            .raw_header
            .iter()
            .enumerate()
            .filter(|(i, _)| !roles.contains(i))
            .filter(|(i, h)| wide_column(*i, h, opts.code_map.as_deref()).is_some())
            .count();
        let results = match (find("value", &["value", "numeric_value"]), tests) {
            (Some(v), _) => Some(format!("a results column ({})", shown(&header[v]))),
            (None, 0) => None,
            (None, n) => Some(format!("{n} column{} of tests by name", if n > 1 { "s" } else { "" })),
        };
        if let Some(results) = results {
            return Err(DataError::Line {
                path: path.into(),
                line: table.header_line,
                msg: format!(
                    "the header has a \"text\" column (notes) and {results}, but no \"code\" column: as a file of \
                     notes its results would be dropped. Put the notes in a file of their own (subject_id, time, \
                     text), or give the results a \"code\" and a \"value\" column (a file of labs and notes)"
                ),
            });
        }
        return Ok(Layout::Notes {
            subject: need("subject_id", &["subject_id"])?,
            time: need("time", &["time", "charttime"])?,
            text: need("text", &["text"])?,
            code: find("code", &["code"]),
            columns: header.len(),
        });
    }
    // no code and no value column: one column per test
    if find("code", &["code"]).is_none() && find("value", &["value", "numeric_value"]).is_none() {
        let (subject, time) = (need("subject_id", &["subject_id"])?, need("time", &["time", "charttime"])?);
        let mut roles: Vec<usize> = Columns::ROLES.iter().filter_map(|r| find(r, &[r])).collect();
        roles.extend([subject, time]);
        let tests: Vec<WideColumn> = table
            .raw_header
            .iter()
            .enumerate()
            .filter(|(i, _)| !roles.contains(i))
            .filter_map(|(i, h)| wide_column(i, h, opts.code_map.as_deref()))
            .collect();
        if !tests.is_empty() {
            return Ok(Layout::Wide { subject, time, tests, columns: header.len() });
        }
        return Err(DataError::Line {
            path: path.into(),
            line: table.header_line,
            msg: format!(
                "the header has no \"code\" column (or name it with read.columns.code), nor a column a catalogue \
                 test or read.code_map names, as a file of one column per test has (the header read: {})",
                header_summary(header, |h| reportable_column(h, columns))
            ),
        });
    }
    let (subject, time, code) =
        (need("subject_id", &["subject_id"])?, need("time", &["time", "charttime"])?, need("code", &["code"])?);
    let value = need("value", &["value", "numeric_value"])?;
    if columns.value.is_none() && col("value").is_some() && col("numeric_value").is_some() {
        return Err(DataError::Line {
            path: path.into(),
            line: table.header_line,
            msg: "the header has both \"value\" and \"numeric_value\": which holds the results is not known \
                  (read.columns.value names it)"
                .into(),
        });
    }
    let (text_value, system, unit) =
        (find("text_value", &["text_value"]), find("system", &["system"]), find("unit", &["unit"]));
    let note = find("text", &["text"]);
    // two roles read from one column (`text_value = "value"` leaves `value` on its own name)
    let roles = [
        ("subject_id", Some(subject)),
        ("time", Some(time)),
        ("code", Some(code)),
        ("value", Some(value)),
        ("text_value", text_value),
        ("system", system),
        ("unit", unit),
        ("text", note),
    ];
    for (i, (role, at)) in roles.iter().enumerate() {
        if let Some((other, _)) = roles[..i].iter().find(|(_, o)| at.is_some() && o == at) {
            return Err(DataError::Line {
                path: path.into(),
                line: table.header_line,
                msg: format!(
                    "{other} and {role} are read from one column ({}): name another with read.columns.{role} or \
                     read.columns.{other}",
                    at.map_or(0, |c| c + 1)
                ),
            });
        }
    }
    Ok(Layout::Events { subject, time, code, value, text_value, system, unit, note, columns: header.len() })
}

/// A CSV file opened for its records: decoded to UTF-8 in the encoding `read.encoding` gives it (by
/// default the one its start shows: UTF-8, Shift_JIS, EUC-JP, UTF-16), its delimiter the one of `,`,
/// tab and `;` its header line holds most of (outside quotes), each record charged to
/// `read.max_line_bytes`; a `.csv.gz` / `.tsv.gz` file inflated within `read.max_decompressed_bytes` and
/// `read.max_gz_ratio`, as an `.ndjson.gz` file is. The label reader opens its CSV files so too.
pub(crate) struct Table {
    pub rdr: ::csv::Reader<Box<dyn std::io::Read>>,
    pub header: ::csv::StringRecord,
    /// the header as written (trimmed): a wide file's units keep their case (`U/L` is not `u/l`)
    pub raw_header: ::csv::StringRecord,
    pub budget: super::bounded::CsvBudget,
    pub encoding: &'static encoding_rs::Encoding,
    /// the encoding was told from the file's bytes (no config key or byte-order mark said it)
    pub guessed: bool,
    pub delimiter: u8,
    /// byte sequences the encoding does not map (each read as U+FFFD)
    pub replaced: charset::Replaced,
    /// the file line the header starts on (2 after Excel's `sep=;` line, more after blank lines)
    pub header_line: u64,
    /// lines before the ones the parser reads (Excel's `sep=;` line)
    skipped_lines: u64,
    /// how the file's first line ends: the parser counts `\n` bytes, and takes the `\n` of a `\r\n`
    /// with the next record
    ending: LineEnding,
    /// records read (the header one): the line of a record where lines end in `\r` alone
    records: u64,
    /// where the bytes read so far leave the quoting (the parser's own rules, [`QuoteState`]), and
    /// whether the file's end was read
    quotes: std::rc::Rc<std::cell::Cell<(QuoteState, bool)>>,
}

/// Where a CSV byte stream stands in the quoting, by the parser's rules (a `"` opening a field opens a
/// quoted field, `""` in one is a quote, a `"` elsewhere is text): a file that ends inside a quoted
/// field was cut short, or a quote was not closed, and its last record holds the rest of the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// a `"` inside a quoted field: its end, or the first of `""`
    QuoteInQuoted,
}

/// Passes a CSV stream through, following its quoting ([`QuoteState`]).
struct QuoteTracker<R> {
    inner: R,
    delimiter: u8,
    state: std::rc::Rc<std::cell::Cell<(QuoteState, bool)>>,
}

impl<R: std::io::Read> std::io::Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (mut st, _) = self.state.get();
        let d = self.delimiter;
        for &b in &buf[..n] {
            st = match (st, b) {
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
                (_, b'\n' | b'\r') => QuoteState::FieldStart,
                (_, b) if b == d => QuoteState::FieldStart,
                _ => QuoteState::Unquoted,
            };
        }
        self.state.set((st, n == 0 && !buf.is_empty()));
        Ok(n)
    }
}

/// How a CSV file's lines end, told from its first line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineEnding {
    Lf,
    CrLf,
    /// old Mac files: the parser counts no lines
    Cr,
}

impl LineEnding {
    fn of(start: &[u8]) -> LineEnding {
        match start.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) if start[i] == b'\n' => LineEnding::Lf,
            Some(i) if start.get(i + 1) == Some(&b'\n') => LineEnding::CrLf,
            // a `\r` ending the buffer is taken as `\r\n`, the more common
            Some(i) if i + 1 == start.len() => LineEnding::CrLf,
            Some(_) => LineEnding::Cr,
            None => LineEnding::Lf,
        }
    }
}

impl Table {
    pub fn open(path: &Path, choice: charset::Choice, limits: super::ReadLimits) -> Result<Table> {
        use std::io::BufRead;
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let opened = charset::open(super::bounded::open(path, file, limits), choice)
            .map_err(|e| DataError::io(path, e))?
            .map_err(|msg| DataError::Format { path: path.into(), msg: format!("the file {msg}") })?;
        let mut text = std::io::BufReader::with_capacity(1 << 16, opened.reader);
        let start = text.fill_buf().map_err(|e| DataError::io(path, e))?;
        // Excel's `sep=;` line names the delimiter and is no header
        let sep = match start {
            [b's', b'e', b'p', b'=', d, rest @ ..] if matches!(d, b',' | b';' | b'\t' | b'|') => {
                // `sep=;` alone on its line (a header `sep=;x,...` is a header; `5 + eol` was computed
                // for it too, an overflow that panicked)
                let eol = match rest {
                    [b'\r', b'\n', ..] => Some(2),
                    [b'\n', ..] | [b'\r', ..] => Some(1),
                    _ => None,
                };
                eol.map(|eol| (*d, 5 + eol))
            }
            _ => None,
        };
        let ending = LineEnding::of(&start[sep.map_or(0, |(_, len)| len)..]);
        let delimiter = match sep {
            Some((d, len)) => {
                text.consume(len);
                d
            }
            None => sniff_delimiter(start),
        };
        let skipped_lines = sep.is_some() as u64;
        // a record over read.max_line_bytes fails the read instead of growing the parser's buffer: a
        // quoted note may span lines, so the parser cannot be resynchronized past it and the file is
        // refused
        let budget = super::bounded::CsvBudget::new(limits.max_line_bytes);
        let quotes = std::rc::Rc::new(std::cell::Cell::new((QuoteState::FieldStart, false)));
        let tracked = QuoteTracker { inner: budget.reader(text), delimiter, state: std::rc::Rc::clone(&quotes) };
        let reader: Box<dyn std::io::Read> = Box::new(tracked);
        let mut rdr = ::csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(super::bounded::CSV_BUFFER)
            .from_reader(reader);
        let header = rdr.headers().cloned().map_err(|e| match e.kind() {
            ::csv::ErrorKind::Utf8 { .. } => {
                DataError::Line { path: path.into(), line: skipped_lines + 1, msg: NOT_UTF8.into() }
            }
            _ => DataError::Format { path: path.into(), msg: format!("cannot read the header: {e}") },
        })?;
        let header_line = skipped_lines + record_line(ending, 1, rdr.position().line(), &header, 1);
        // header names are matched trimmed and in any case (Excel and SQL exports capitalize them)
        let raw_header: ::csv::StringRecord = header.iter().map(str::trim).collect();
        let header = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        budget.record_done();
        Ok(Table {
            rdr,
            header,
            raw_header,
            budget,
            encoding: opened.encoding,
            guessed: opened.chosen == charset::Chosen::Guessed,
            delimiter,
            replaced: opened.replaced,
            header_line,
            skipped_lines,
            ending,
            records: 1,
            quotes,
        })
    }

    /// Whether the record just read is the file's last and the file ends inside its quoted field (cut
    /// short, or a quote never closed): the record holds the rest of the file, and is no record. (The
    /// end was read only once the parser needed bytes past the buffered ones: a record it returns after
    /// that is the last.)
    pub fn ends_in_open_quote(&self) -> bool {
        self.quotes.get() == (QuoteState::Quoted, true)
    }

    /// Reads the next record into `rec`, with the file line it starts on as an editor numbers lines
    /// (Excel's `sep=;` line, blank lines and line breaks inside quoted fields counted). On an error,
    /// the line the parser stood on (blank lines before a broken record are not counted then).
    pub fn next_record(&mut self, rec: &mut ::csv::StringRecord) -> (::csv::Result<bool>, u64) {
        let before = self.rdr.position().line();
        let read = self.rdr.read_record(rec);
        let line = match read {
            Ok(true) => {
                self.records += 1;
                record_line(self.ending, before, self.rdr.position().line(), rec, self.records)
            }
            _ => record_line(self.ending, before, before, &::csv::StringRecord::new(), self.records + 1),
        };
        (read, line + self.skipped_lines)
    }

    /// The position of the column named `name` in the header.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The delimiter's name as a finding names it.
    pub fn delimiter_name(&self) -> &'static str {
        match self.delimiter {
            b'\t' => "tab",
            b';' => "semicolon",
            b'|' => "pipe",
            _ => "comma",
        }
    }
}

/// The line a record starts on from the parser's line count before and after reading it (the parser
/// counts `\n` bytes: those of the blank lines it skips, of line breaks in quoted fields and of the
/// record's end; a `\r\n`'s `\n` is read with the next record); `nth` is the record's number (header 1).
fn record_line(ending: LineEnding, before: u64, after: u64, rec: &::csv::StringRecord, nth: u64) -> u64 {
    let breaks: u64 = rec.iter().map(|f| memchr::memchr_iter(b'\n', f.as_bytes()).count() as u64).sum();
    match ending {
        // the last record of a file without a final line end has no `\n` of its own: `before` then
        LineEnding::Lf => after.saturating_sub(1 + breaks).max(before),
        LineEnding::CrLf => after.saturating_sub(breaks).max(before + (nth > 1) as u64),
        LineEnding::Cr => nth,
    }
}

/// Why the last record of a file that ends inside a quoted field is no record.
pub(crate) const ENDS_IN_OPEN_QUOTE: &str =
    "the file ends inside a quoted field that starts here (the file is cut short, or a quote is not closed): \
     the rest of the file was read into it";

/// Why a record is malformed when its bytes are not UTF-8 (a UTF-8 start, another encoding later).
const NOT_UTF8: &str =
    "not UTF-8 text, though the file's start was read as UTF-8: name the file's encoding with read.encoding";

/// The delimiter of a CSV file from its start: the one of `,`, tab and `;` its first line that is not
/// blank holds most of outside double quotes; `|` where it holds none of those and a `|` (exports of
/// pipe-delimited text; a comma file's header may hold `LOINC|2160-0`); a comma when it holds none: a
/// file of one column.
fn sniff_delimiter(start: &[u8]) -> u8 {
    // the first line that is not blank (the parser skips blank lines)
    let line = start.split(|&b| b == b'\n').find(|l| l.iter().any(|b| !b.is_ascii_whitespace())).unwrap_or(start);
    let mut counts = [0usize; 3];
    let mut pipes = 0;
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b'\t' if !quoted => counts[1] += 1,
            b';' if !quoted => counts[2] += 1,
            b'|' if !quoted => pipes += 1,
            _ => {}
        }
    }
    let (best, n) = counts.iter().enumerate().max_by_key(|&(i, n)| (n, std::cmp::Reverse(i))).unwrap();
    if *n == 0 && pipes > 0 {
        b'|'
    } else if *n == 0 {
        b','
    } else {
        [b',', b'\t', b';'][best]
    }
}

/// A time of a CSV file: a FHIR date/dateTime (`2024-01-05`, `2024-01-05T08:30:00+09:00`), or the
/// forms spreadsheets, Japanese systems and HL7 v2 write ([`time::parse_lenient`]); a time without a
/// zone is read in `read.time_zone`, as the FHIR reader reads it ([`time::Stamp::utc`]).
pub fn parse_time(s: &str) -> Option<time::Stamp> {
    time::parse(s).or_else(|| time::parse_lenient(s))
}

/// Reads one CSV file into the sink.
pub fn read_file(path: &Path, sink: &mut Sink) -> Result<()> {
    let name = sink.report.file_label(path);
    sink.report.bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut table = Table::open(path, sink.opts.encoding, sink.opts.limits)?;
    let layout = layout(path, &table, sink.opts)?;
    if let Layout::Wide { tests, columns, subject, time, .. } = &layout {
        // which columns were not read is said by number, never their names (a header may be a row of
        // data); a warning: their values are lost (found by a tester: `Na (mmol/L)` and `ALB` were
        // dropped under an info without their columns)
        let unread: Vec<usize> = (0..*columns)
            .filter(|i| i != subject && i != time && !tests.iter().any(|t| t.at == *i))
            .map(|i| i + 1)
            .collect();
        sink.report.finding(Severity::Info, "wide_layout", "csv", "header", None, 1);
        if !unread.is_empty() {
            const SHOWN: usize = 12;
            let mut numbers: Vec<String> = unread.iter().take(SHOWN).map(usize::to_string).collect();
            if unread.len() > SHOWN {
                numbers.push(format!("and {} more", unread.len() - SHOWN));
            }
            let detail = format!(
                "{}: columns {} (not a test of the catalogue or the code map, nor subject_id or time; \
                 read.code_map can name them)",
                guard::shown_path(&name),
                numbers.join(", ")
            );
            sink.report.finding(
                Severity::Warning,
                "wide_column_not_read",
                "csv",
                "header",
                Some(&detail),
                unread.len() as u64,
            );
        }
    }
    // counted in files (a directory of a thousand files is one finding)
    if table.encoding != encoding_rs::UTF_8 {
        // told from the bytes: a guess, said as a warning (read.encoding names it for certain)
        let severity = if table.guessed { Severity::Warning } else { Severity::Info };
        sink.report.finding(severity, "text_encoding", "csv", table.encoding.name(), None, 1);
    }
    if table.delimiter != b',' {
        sink.report.finding(Severity::Info, "csv_delimiter", "csv", table.delimiter_name(), None, 1);
    }
    let mut rec = ::csv::StringRecord::new();
    loop {
        let (read, line) = table.next_record(&mut rec);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if matches!(e.kind(), ::csv::ErrorKind::Io(_)) => {
                return Err(DataError::io(path, format!("at line {line}: {e}")))
            }
            Err(e) => {
                table.budget.record_done();
                sink.report.lines += 1;
                let why = match e.kind() {
                    ::csv::ErrorKind::Utf8 { .. } => NOT_UTF8,
                    _ => "not valid CSV",
                };
                sink.report.malformed_line(&name, line, why);
                continue;
            }
        }
        table.budget.record_done();
        // a row of empty fields (spreadsheets leave `,,,,` rows after the data) is no record
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        sink.report.lines += 1;
        if table.ends_in_open_quote() {
            sink.report.malformed_line(&name, line, ENDS_IN_OPEN_QUOTE);
            continue;
        }
        if layout.swallows_rows(&rec, table.delimiter) {
            sink.report.malformed_line(
                &name,
                line,
                "a quoted field that does not end where its row does (a quote opened on this line is not closed: \
                 the rows after it were read into it)",
            );
            continue;
        }
        // (the identifiers found in the row are said at its line)
        sink.report.reading(&name, line);
        if let Err(reason) = row(&layout, &rec, table.delimiter == b';', sink) {
            sink.report.malformed_line(&name, line, reason);
        }
    }
    sink.report.reading("", 0);
    if table.replaced.count() > 0 {
        // the sequences are somewhere in the file's text (read as U+FFFD); no line is lost
        let (field, shown) = (table.encoding.name(), guard::shown_path(&name));
        sink.report.finding(Severity::Warning, "undecodable_bytes", "csv", field, Some(&shown), table.replaced.count());
    }
    sink.report.files += 1;
    Ok(())
}

/// A header as an error may show it: its printable names with their column numbers, the others counted
/// (`16 columns: 2 "subject_id", 9 "value", 14 names not printed`).
/// `shown` gives a name as it may be printed (`None`: not printed).
pub(crate) fn header_summary(header: &::csv::StringRecord, shown: impl Fn(&str) -> Option<String>) -> String {
    let n = header.len();
    let mut parts = vec![format!("{n} column{}", if n == 1 { "" } else { "s" })];
    let mut hidden = 0;
    for (i, h) in header.iter().enumerate() {
        match shown(h) {
            Some(n) => parts.push(format!("{} {n}", i + 1)),
            None => hidden += 1,
        }
    }
    let head = parts.remove(0);
    if hidden > 0 {
        parts.push(format!("{hidden} name{} not printed", if hidden == 1 { "" } else { "s" }));
    }
    format!("{head}: {}", parts.join(", "))
}

/// A header's column name as an error may print it: one of the columns the reader knows or the config
/// names, else `None` (a header is a line of the file: a file without one has a row of data there).
fn reportable_column(h: &str, columns: &Columns) -> Option<String> {
    match h.trim() {
        n @ ("subject_id" | "time" | "charttime" | "code" | "system" | "value" | "numeric_value" | "text_value"
        | "unit" | "text" | "prediction_time" | "boolean_value" | "integer_value" | "float_value"
        | "categorical_value") => Some(format!("{n:?}")),
        // a name the config gives (not the data's)
        n if Columns::ROLES.iter().any(|r| columns.get(r).as_deref() == Some(n)) => Some(format!("{n:?}")),
        _ => None,
    }
}

/// A value with a leading comparator (`<0.1`, `>=200`, `≥ 200`: a result past a limit of detection):
/// the number and whether it had one. The MEDS reader reads its text results with it too.
///
/// Japanese systems write the limit first and the comparison after it (`0.3未満` below, `3.5以下` at most,
/// `1000以上` at least, `1000超` above) or with full-width signs (`＜0.3`, `≦0.3`, `＞＝200`): read so too
/// (found by a tester: every such result was dropped).
pub(crate) fn censored(v: &str) -> (&str, bool) {
    for c in ["<=", ">=", "<", ">", "≤", "≥", "≦", "≧", "＜", "＞"] {
        if let Some(rest) = v.strip_prefix(c) {
            return (rest.trim_start_matches(['=', '＝']).trim_start(), true);
        }
    }
    for c in ["未満", "以下", "以上", "超"] {
        if let Some(rest) = v.strip_suffix(c) {
            return (rest.trim_end(), true);
        }
    }
    (v, false)
}

/// A censored result (`<0.3`, `0.3未満`) read as its limit; `None` for anything else.
pub(crate) fn censored_number(v: &str) -> Option<f32> {
    match censored(v.trim()) {
        (number, true) => super::fhir::numeric_string(number),
        _ => None,
    }
}

/// Whether a value field says there is no value: empty, or the placeholders of R, pandas and SQL
/// exports (`NA`, `NaN`, `NULL`, `None`, `N/A`).
fn missing(v: &str) -> bool {
    v.is_empty() || ["na", "nan", "null", "none", "n/a", "#n/a"].iter().any(|m| v.eq_ignore_ascii_case(m))
}

/// What a result field holds.
enum Value {
    /// a number (`1.2`, `1e3`, full-width `１．２`), or a censored one read as its limit (`<0.1`,
    /// `>= 200`, counted as `censored_value`)
    Number(f32),
    /// an ordinal result (`陰性`, `2+`, `(±)`): its level, read as the FHIR reader reads one
    Level(f32),
    /// other text: no value
    Text,
}

impl Value {
    /// The event a result is: an ordinal level a coded event, a number a lab (a vital sign's: a vital),
    /// text a lab without a value.
    fn event(self, vital: bool) -> (EventKind, f32) {
        match self {
            Value::Level(level) => (EventKind::Coded, level),
            Value::Number(v) if vital => (EventKind::Vital, v),
            Value::Number(v) => (EventKind::Lab, v),
            Value::Text => (EventKind::Lab, f32::NAN),
        }
    }
}

/// A result field's value. Text that is neither a number nor an ordinal is counted: as `numeric_text`
/// (a warning) when it holds a digit (`1,5` with a decimal comma, `1.2H` with a flag, `1.2 mg/dL`: a
/// number this reader does not guess at), else as `text_result` (`see comment`).
///
/// `cell` says how the file writes numbers ([`Cells`]): with a decimal comma where `;` delimits
/// (`0,9`, as European spreadsheets export), and whether the row gives a unit (a bare dash beside one,
/// `-` or `ー`, is a test not measured, not a negative result).
fn result(v: &str, field: &'static str, cell: Cells, sink: &mut Sink) -> Value {
    let (number, is_censored) = censored(v);
    let parsed =
        number.parse::<f32>().ok().filter(|x| x.is_finite()).or_else(|| super::fhir::numeric_string(number)).or_else(
            || {
                let x = cell.decimal_comma.then(|| decimal_comma(number)).flatten()?;
                sink.report.count(Severity::Info, "decimal_comma", "csv", field);
                Some(x)
            },
        );
    if let Some(x) = parsed {
        // a run of ten digits or more is no lab result's way of writing a number; it may be a phone
        // number or an Individual Number where a result should be
        if long_digits(number) && identifiers(v, field, sink) {
            return Value::Text;
        }
        if is_censored {
            sink.report.count(Severity::Info, "censored_value", "csv", field);
        }
        return Value::Number(x);
    }
    if cell.unit && is_dash(v) {
        // (found by a tester: `creatinine,-,mg/dL` was a coded negative)
        sink.report.count(Severity::Info, "dash_placeholder", "csv", field);
        return Value::Text;
    }
    if let Some(level) = super::fhir::ordinal(v) {
        return Value::Level(level);
    }
    if identifiers(v, field, sink) {
        return Value::Text;
    }
    if v.chars().any(|c| c.is_ascii_digit() || ('０'..='９').contains(&c)) {
        sink.report.count(Severity::Warning, "numeric_text", "csv", field);
    } else {
        sink.report.count(Severity::Info, "text_result", "csv", field);
    }
    Value::Text
}

/// How a file's cells write a result: see [`result`].
#[derive(Clone, Copy, Default)]
struct Cells {
    decimal_comma: bool,
    unit: bool,
}

/// A number written with a decimal comma (`0,9`, `-12,5`; full-width digits too): one comma between
/// digits, nothing else.
fn decimal_comma(v: &str) -> Option<f32> {
    let folded: String = v
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            ',' | '，' => '.',
            c => c,
        })
        .collect();
    let (int, frac) = folded.trim_start_matches(['-', '+']).split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(int) && digits(frac) && v.contains([',', '，'])).then(|| folded.parse::<f32>().ok()).flatten()
}

/// A bare dash (`-`, `ー`, `－`, `−`, `‐`): a spreadsheet's cell for a test not done.
pub(crate) fn is_dash(v: &str) -> bool {
    matches!(v.trim(), "-" | "ー" | "－" | "−" | "‐" | "―" | "ｰ")
}

/// Ten digits or more (ASCII or full-width): no lab result's way of writing a number; it may be a
/// phone number or an Individual Number where a result should be.
fn long_digits(v: &str) -> bool {
    v.len() >= 10 && v.chars().filter(|c| c.is_ascii_digit() || ('０'..='９').contains(c)).count() >= 10
}

/// Text in a value column is the export's content, as a FHIR valueString is: scanned for identifiers,
/// each one found a finding in `csv.<field>` (blocking under `read.identifiers = "reject"`). Whether any
/// was found.
fn identifiers(v: &str, field: &'static str, sink: &mut Sink) -> bool {
    if v.is_empty() {
        return false;
    }
    let found = guard::scan(&guard::visible(v.to_owned()));
    for (k, _) in &found {
        sink.report.identifier(sink.opts.identifiers, *k, "csv", field);
    }
    !found.is_empty()
}

/// The code system a `system` column's value names: a URI or URN as it is (`http://loinc.org`), the
/// names LOINC and JLAC10 as theirs; `None` for anything else (a source system's name such as `LIS`,
/// counted as `system_not_read`, the code then read as a bare one).
pub(crate) fn code_system(s: &str) -> Option<Cow<'_, str>> {
    if s.eq_ignore_ascii_case("loinc") {
        return Some(catalog::LOINC.into());
    }
    if s.eq_ignore_ascii_case("jlac10") {
        return Some(catalog::JLAC10.into());
    }
    let uri = s.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    uri.then_some(s.into())
}

/// The (system, code) of a bare code: a catalogue test's name or LOINC code (well formed, its check
/// digit right) is that LOINC code; a catalogue JLAC10 code is JLAC10; a MEDS code (`LOINC/2160-0`,
/// `LAB//2160-0//mg/dL`) as the MEDS reader reads it; any other is local (`medtrain:csv`).
fn bare_code(code: &str) -> (Cow<'static, str>, Cow<'_, str>) {
    match catalog::by_name_or_code(code) {
        Some(l) if l.name == code || (l.loinc == code && catalog::loinc_is_valid(code)) => {
            return (catalog::LOINC.into(), l.loinc.into())
        }
        Some(_) if catalog::lookup(catalog::JLAC10, code).is_some() => return (catalog::JLAC10.into(), code.into()),
        _ => {}
    }
    // a catalogue JLAC10 code written otherwise (`3C015-0000-023-271-01`)
    if let Some(j) = catalog::jlac10_canonical(code).filter(|j| catalog::lookup(catalog::JLAC10, j).is_some()) {
        return (catalog::JLAC10.into(), j.into());
    }
    if let Some(l) = code.strip_prefix("LOINC/") {
        return (catalog::LOINC.into(), l.into());
    }
    // a test's name in another case or spacing (`Creatinine`, `CRP`, `Total Bilirubin`), as a wide
    // file's headers are read (folded only where it could be a name: a row's code is read per row, and
    // a name starts with a letter and has no `/`, unlike `2160-0` or `LAB//50912//mg/dL`)
    let name_like = code.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && !code.contains('/');
    if name_like && code.bytes().any(|b| b.is_ascii_uppercase() || b == b' ' || b == b'-') {
        let folded = catalog::folded_name(code);
        if let Some(l) = catalog::by_name_or_code(&folded).filter(|l| l.name == folded) {
            return (catalog::LOINC.into(), l.loinc.into());
        }
    }
    let mut parts = code.split("//");
    if let (Some(_), Some(loinc)) = (parts.next(), parts.next()) {
        if catalog::lookup(catalog::LOINC, loinc).is_some() {
            return (catalog::LOINC.into(), loinc.into());
        }
    }
    ("medtrain:csv".into(), code.into())
}

/// Whether a code is a MEDS note's (`NOTE//discharge`, `NOTE/radiology`, `note`): its text is a note.
fn meds_note_code(code: &str) -> bool {
    code.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("note")) && matches!(code.as_bytes().get(4), None | Some(b'/'))
}

/// The unit a MEDS lab code of three or more parts ends with (`LAB//50912//mg/dL`), as the MEDS reader
/// reads it.
fn meds_code_unit(code: &str) -> Option<&str> {
    // (per row of a file without a unit column: no allocation)
    if !code.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("lab")) {
        return None;
    }
    let (head, unit) = code.rsplit_once("//")?;
    let unit = unit.trim();
    (head.contains("//") && !unit.is_empty()).then_some(unit)
}

/// An event row's subject and time (UTC); `None` for a row without a time (a fact such as a birth sex,
/// as MEDS writes them: counted, not used, as the MEDS reader counts it, since a series needs a time).
fn subject_and_time<'r>(
    subject: Option<&'r str>,
    time: Option<&str>,
    sink: &mut Sink,
) -> std::result::Result<Option<(&'r str, i64)>, &'static str> {
    let mut subject = subject.filter(|s| !s.is_empty()).ok_or("no subject_id")?;
    // an integer id a spreadsheet or pandas wrote as a float (`7731.0`): the subject `7731` (read as
    // written, one patient's rows in files written both ways were two subjects); said
    if let Some(int) = super::integer_written_as_float(subject) {
        sink.report.count(Severity::Warning, "float_subject_id", "csv", "subject_id");
        subject = int;
    }
    let time = time.ok_or("no time")?;
    if time.is_empty() {
        sink.report.count(Severity::Info, "static_event", "csv", "time");
        return Ok(None);
    }
    let time = sink.time(parse_time(time).ok_or("unreadable time")?).ok_or("unreadable time")?;
    Ok(Some((subject, time)))
}

fn row(
    layout: &Layout,
    rec: &csv::StringRecord,
    decimal_comma: bool,
    sink: &mut Sink,
) -> std::result::Result<(), &'static str> {
    if rec.len() != layout.columns() {
        // a quote opened and never closed takes the rows after it into one field, to the end of the file
        // (or to the next lone quote): said as what it most likely is
        if rec.len() < layout.columns() && rec.iter().any(|f| f.contains('\n')) {
            return Err("a quoted field that does not end where its row does (a quote opened on this line is \
                        not closed: the rows after it were read into it), or a row with fewer fields than the header");
        }
        return Err("a row with more or fewer fields than the header");
    }
    let get = |i: usize| rec.get(i).map(str::trim);
    match *layout {
        Layout::Events { subject, time: t, system, code, value, text_value, unit, note, .. } => {
            // a measurement without a time is a broken row, not a static fact (sex, birth) as MEDS has
            if get(t) == Some("") && get(value).is_some_and(|v| !missing(v)) {
                return Err("a result without a time");
            }
            let Some((subject, time)) = subject_and_time(get(subject), get(t), sink)? else { return Ok(()) };
            let note_text = note.and_then(|i| rec.get(i)).filter(|t| !t.trim().is_empty());
            let no_value = get(value).is_none_or(missing) && text_value.and_then(get).is_none_or(missing);
            let code = match (get(code).filter(|s| !s.is_empty()), note_text) {
                (Some(c), _) => c,
                // a note of a file of labs and notes needs no code: a note as a notes file's are
                (None, Some(t)) if no_value => {
                    let text = guarded_note(t, sink);
                    sink.push(Rec::note(subject.into(), time, ("medtrain:note".into(), "note".into()), text));
                    return Ok(());
                }
                (None, _) => return Err("no code"),
            };
            let written = code;
            let (system, code): (Cow<str>, Cow<str>) =
                match (code.split_once('|'), system.and_then(get).filter(|s| !s.is_empty())) {
                    // `LOINC|2160-0` as the system column's `LOINC` is read
                    (Some((s, c)), _) => (code_system(s).unwrap_or(s.into()), c.into()),
                    (None, Some(s)) => match code_system(s) {
                        Some(s) => (s, code.into()),
                        None => {
                            sink.report.count(Severity::Info, "system_not_read", "csv", "system");
                            bare_code(code)
                        }
                    },
                    (None, None) => bare_code(code),
                };
            // MEDS' `LAB//50912//mg/dL` carries its unit where there is no unit column
            let unit = unit.and_then(get).filter(|u| !u.is_empty()).or_else(|| meds_code_unit(written));
            let cell = Cells { decimal_comma, unit: unit.is_some() };
            let value = match get(value).filter(|v| !missing(v)) {
                Some(v) => {
                    // a text column beside the numbers (MIMIC's `value`) is the export's content too
                    if let Some(t) = text_value.and_then(get).filter(|t| long_digits(t) || t.parse::<f64>().is_err()) {
                        identifiers(t, "text_value", sink);
                    }
                    result(v, "value", cell, sink)
                }
                None => match text_value.and_then(get).filter(|v| !missing(v)) {
                    // MEDS written as CSV: a note's code (`NOTE//discharge`) with its text in text_value,
                    // a note as the MEDS reader reads it (every one was a lab without a value)
                    Some(_) if meds_note_code(written) => {
                        let t = text_value.and_then(|i| rec.get(i)).unwrap_or_default();
                        let text = guarded_note(t, sink);
                        sink.push(Rec::note(subject.into(), time, (system, code), text));
                        return Ok(());
                    }
                    Some(v) => result(v, "text_value", cell, sink),
                    None => Value::Text,
                },
            };
            // a row of a file of labs and notes: a note where it has no value and its text is filled;
            // beside a value, the text (a comment) is scanned, not kept
            if let Some(t) = note_text {
                if no_value {
                    let text = guarded_note(t, sink);
                    sink.push(Rec::note(subject.into(), time, (system, code), text));
                    return Ok(());
                }
                identifiers(t, "text", sink);
            }
            let (kind, value) = value.event(catalog::lookup(&system, &code).is_some_and(|l| l.vital));
            sink.push(Rec {
                subject: subject.into(),
                time,
                kind,
                system,
                code,
                value,
                unit: unit.map(Into::into),
                text: None,
                end: i64::MIN,
            });
        }
        Layout::Wide { subject, time: t, ref tests, .. } => {
            if get(t) == Some("") && tests.iter().any(|c| get(c.at).is_some_and(|v| !missing(v))) {
                return Err("a result without a time");
            }
            let Some((subject, time)) = subject_and_time(get(subject), get(t), sink)? else { return Ok(()) };
            // an empty cell is a test not done: no event, and nothing to count
            for c in tests {
                let Some(v) = get(c.at).filter(|v| !missing(v)) else { continue };
                let cell = Cells { decimal_comma, unit: c.unit.is_some() };
                let (kind, value) = result(v, "value", cell, sink).event(c.vital);
                sink.push(Rec {
                    subject: subject.into(),
                    time,
                    kind,
                    system: Cow::Borrowed(&c.system),
                    code: Cow::Borrowed(&c.code),
                    value,
                    unit: c.unit.as_deref().map(Cow::Borrowed),
                    text: None,
                    end: i64::MIN,
                });
            }
        }
        Layout::Notes { subject, time: t, text, code, .. } => {
            let subject = get(subject).filter(|s| !s.is_empty()).ok_or("no subject_id")?;
            let time = parse_time(get(t).ok_or("no time")?).ok_or("unreadable time")?;
            let time = sink.time(time).ok_or("unreadable time")?;
            let text = guarded_note(rec.get(text).ok_or("no text")?, sink);
            if text.trim().is_empty() {
                // a row without text is no note (it was one, empty, for the model)
                sink.report.count(Severity::Info, "empty_note", "csv", "text");
                return Ok(());
            }
            // the note's type where a `code` column gives it (as a DocumentReference's type codes it)
            let code = match code.and_then(get).filter(|c| !c.is_empty()) {
                Some(c) => ("medtrain:csv".into(), c.into()),
                None => ("medtrain:note".into(), "note".into()),
            };
            sink.push(Rec::note(subject.into(), time, code, text));
        }
    }
    Ok(())
}

/// A note's text as kept: without invisible characters, its identifiers counted and redacted.
fn guarded_note(raw: &str, sink: &mut Sink) -> String {
    let text = guard::visible(super::note_from_rtf(raw.to_owned()));
    let found = guard::scan(&text);
    if found.is_empty() {
        return text;
    }
    for (k, _) in &found {
        sink.report.identifier(sink.opts.identifiers, *k, "notes.csv", "text");
    }
    guard::redact(&text, &found)
}

/// Reads a CSV file or every `*.csv` under a directory.
pub fn read(path: &Path, opts: &ReadOptions, data: &mut super::Dataset, report: &mut super::Report) -> Result<()> {
    let files = super::input_files(path, super::CSV_EXTS, report)?;
    let mut sink = Sink { data, report, opts };
    let map = opts.code_map.as_ref().and_then(|m| std::fs::canonicalize(&m.path).ok());
    for f in files {
        // a labels file in the same directory is not an input of events
        if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("labels")) {
            sink.report.finding(
                Severity::Info,
                "labels_file_skipped",
                "csv",
                "-",
                Some(&guard::shown_path(&f.file_name().unwrap_or_default().to_string_lossy())),
                1,
            );
            continue;
        }
        // nor is the code map, kept beside the files it maps
        if map.as_ref().is_some_and(|m| std::fs::canonicalize(&f).is_ok_and(|f| &f == m)) {
            continue;
        }
        read_file(&f, &mut sink)?;
    }
    Ok(())
}
