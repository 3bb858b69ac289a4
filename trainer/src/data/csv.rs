//! CSV input: event files `subject_id,time,code,value,unit` and note files `subject_id,time,text`,
//! told apart by their header. `code` is `system|code`, a code of the system a `system` column names, or
//! a bare code: a catalogue test name such as `creatinine` or a catalogue LOINC code (`2160-0`) is that
//! LOINC code, a catalogue JLAC10 code is JLAC10, any other is of the system `medtrain:csv`. `time` is
//! a FHIR date/dateTime or a spreadsheet's `2024/01/05 8:30`. A CSV directory is every `*.csv` in it,
//! in name order. Files are decoded and split as [`Table`] says.

use super::check::Severity;
use super::{catalog, charset, guard, time, DataError, EventKind, ReadOptions, Rec, Result, Sink};
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
        columns: usize,
    },
    Notes {
        subject: usize,
        time: usize,
        text: usize,
        columns: usize,
    },
}

impl Layout {
    /// The header's field count, which every row must have.
    fn columns(&self) -> usize {
        match *self {
            Layout::Events { columns, .. } | Layout::Notes { columns, .. } => columns,
        }
    }
}

/// The columns of a CSV file from its header (names trimmed and lower-cased by [`Table::open`]):
/// notes when it has `text`, else events; MEDS' names `numeric_value` (for `value`) and `text_value`
/// are read too, and a `system` column naming each code's system.
fn layout(path: &Path, header: &::csv::StringRecord) -> Result<Layout> {
    let col = |n: &str| header.iter().position(|h| h == n);
    if let Some((i, h)) = header.iter().enumerate().find(|(i, h)| header.iter().take(*i).any(|o| o == *h)) {
        return Err(DataError::Line {
            path: path.into(),
            line: 1,
            msg: format!(
                "the header names column {} twice (columns {} and {})",
                reportable_column(h),
                col(h).map_or(0, |c| c + 1),
                i + 1
            ),
        });
    }
    let need = |names: &[&str]| {
        names.iter().find_map(|n| col(n)).ok_or_else(|| DataError::Line {
            path: path.into(),
            line: 1,
            msg: format!(
                "the header has no {:?} column{} (the header read: {} columns, {})",
                names[0],
                if names.len() > 1 { format!(" (or {:?})", &names[1..]) } else { String::new() },
                header.len(),
                header.iter().map(reportable_column).collect::<Vec<_>>().join(", ")
            ),
        })
    };
    if col("text").is_some() {
        return Ok(Layout::Notes {
            subject: need(&["subject_id"])?,
            time: need(&["time"])?,
            text: need(&["text"])?,
            columns: header.len(),
        });
    }
    let (subject, time, code) = (need(&["subject_id"])?, need(&["time"])?, need(&["code"])?);
    let value = need(&["value", "numeric_value"])?;
    if col("value").is_some() && col("numeric_value").is_some() {
        return Err(DataError::Line {
            path: path.into(),
            line: 1,
            msg: "the header has both \"value\" and \"numeric_value\": which holds the results is not known".into(),
        });
    }
    Ok(Layout::Events {
        subject,
        time,
        code,
        value,
        text_value: col("text_value"),
        system: col("system"),
        unit: col("unit"),
        columns: header.len(),
    })
}

/// A CSV file opened for its records: decoded to UTF-8 in the encoding `read.encoding` gives it (by
/// default the one its start shows: UTF-8, Shift_JIS, EUC-JP, UTF-16), its delimiter the one of `,`,
/// tab and `;` its header line holds most of (outside quotes), each record charged to
/// `read.max_line_bytes`. The label reader opens its CSV files so too.
pub(crate) struct Table {
    pub rdr: ::csv::Reader<Box<dyn std::io::Read>>,
    pub header: ::csv::StringRecord,
    pub budget: super::bounded::CsvBudget,
    pub encoding: &'static encoding_rs::Encoding,
    pub delimiter: u8,
    /// byte sequences the encoding does not map (each read as U+FFFD)
    pub replaced: charset::Replaced,
}

impl Table {
    pub fn open(path: &Path, choice: charset::Choice, max_line_bytes: u64) -> Result<Table> {
        use std::io::BufRead;
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let opened = charset::open(file, choice)
            .map_err(|e| DataError::io(path, e))?
            .map_err(|msg| DataError::Format { path: path.into(), msg: format!("the file {msg}") })?;
        let mut text = std::io::BufReader::with_capacity(1 << 16, opened.reader);
        let delimiter = sniff_delimiter(text.fill_buf().map_err(|e| DataError::io(path, e))?);
        // a record over read.max_line_bytes fails the read instead of growing the parser's buffer: a
        // quoted note may span lines, so the parser cannot be resynchronized past it and the file is
        // refused
        let budget = super::bounded::CsvBudget::new(max_line_bytes);
        let reader: Box<dyn std::io::Read> = Box::new(budget.reader(text));
        let mut rdr = ::csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(super::bounded::CSV_BUFFER)
            .from_reader(reader);
        let header = rdr.headers().map_err(|e| match e.kind() {
            ::csv::ErrorKind::Utf8 { .. } => DataError::Line { path: path.into(), line: 1, msg: NOT_UTF8.into() },
            _ => DataError::Format { path: path.into(), msg: format!("cannot read the header: {e}") },
        })?;
        // header names are matched trimmed and in any case (Excel and SQL exports capitalize them)
        let header = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        budget.record_done();
        Ok(Table { rdr, header, budget, encoding: opened.encoding, delimiter, replaced: opened.replaced })
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
            _ => "comma",
        }
    }
}

/// Why a record is malformed when its bytes are not UTF-8 (a UTF-8 start, another encoding later).
const NOT_UTF8: &str = "not UTF-8 text (the file's start was): name the file's encoding with read.encoding";

/// The delimiter of a CSV file from its start: the one of `,`, tab and `;` its first line holds most
/// of outside double quotes (a comma when it holds none: a file of one column).
fn sniff_delimiter(start: &[u8]) -> u8 {
    let line = start.split(|&b| b == b'\n').next().unwrap_or(start);
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b'\t' if !quoted => counts[1] += 1,
            b';' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let (best, n) = counts.iter().enumerate().max_by_key(|&(i, n)| (n, std::cmp::Reverse(i))).unwrap();
    if *n == 0 {
        b','
    } else {
        [b',', b'\t', b';'][best]
    }
}

/// A time of a CSV file: a FHIR date/dateTime (`2024-01-05`, `2024-01-05T08:30:00+09:00`), or the
/// forms spreadsheets and Japanese systems write: `2024/01/05`, `2024/1/5 8:30`, `2024-1-5 08:30:15`
/// (a time without a zone is read as the FHIR reader reads it, as UTC).
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if let Some(t) = time::parse(s) {
        return Some(t);
    }
    // Y[/-]M[/-]D with one- or two-digit month and day, then [ T]H:MM[:SS]
    let (date, clock) = match s.split_once([' ', 'T']) {
        Some((d, c)) => (d, Some(c.trim())),
        None => (s, None),
    };
    let mut parts = date.split(['/', '-']);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let short = |p: &str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) || !short(m) || !short(d) {
        return None;
    }
    let mut iso = format!("{y}-{m:0>2}-{d:0>2}");
    if let Some(c) = clock {
        let mut hms = c.split(':');
        let (h, mi) = (hms.next()?, hms.next()?);
        let sec = hms.next();
        if hms.next().is_some()
            || !short(h)
            || mi.len() != 2
            || !short(mi)
            || sec.is_some_and(|x| x.len() != 2 || !short(x))
        {
            return None;
        }
        iso.push_str(&format!("T{h:0>2}:{mi}:{}", sec.unwrap_or("00")));
    }
    time::parse(&iso)
}

/// Reads one CSV file into the sink.
pub fn read_file(path: &Path, sink: &mut Sink) -> Result<()> {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    sink.report.bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut table = Table::open(path, sink.opts.encoding, sink.opts.limits.max_line_bytes)?;
    let layout = layout(path, &table.header)?;
    // counted in files (a directory of a thousand files is one finding)
    if table.encoding != encoding_rs::UTF_8 {
        sink.report.finding(Severity::Info, "text_encoding", "csv", table.encoding.name(), None, 1);
    }
    if table.delimiter != b',' {
        sink.report.finding(Severity::Info, "csv_delimiter", "csv", table.delimiter_name(), None, 1);
    }
    let mut rec = ::csv::StringRecord::new();
    loop {
        let line = table.rdr.position().line();
        match table.rdr.read_record(&mut rec) {
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
        if let Err(reason) = row(&layout, &rec, sink) {
            sink.report.malformed_line(&name, line, reason);
        }
    }
    if table.replaced.count() > 0 {
        // the sequences are somewhere in the file's text (read as U+FFFD); no line is lost
        let (field, shown) = (table.encoding.name(), guard::shown_path(&name));
        sink.report.finding(Severity::Warning, "undecodable_bytes", "csv", field, Some(&shown), table.replaced.count());
    }
    sink.report.files += 1;
    Ok(())
}

/// A header's column name as an error may print it: one of the columns the reader knows, else a
/// placeholder (a header is a line of the file).
fn reportable_column(h: &str) -> String {
    match h.trim() {
        n @ ("subject_id" | "time" | "code" | "system" | "value" | "numeric_value" | "text_value" | "unit" | "text"
        | "prediction_time" | "boolean_value" | "integer_value" | "float_value" | "categorical_value") => {
            format!("{n:?}")
        }
        _ => "(a name that is not printed)".into(),
    }
}

/// A value with a leading comparator (`<0.1`, `>=200`, `≥ 200`: a result past a limit of detection):
/// the number and whether it had one. The MEDS reader reads its text results with it too.
pub(crate) fn censored(v: &str) -> (&str, bool) {
    for c in ["<=", ">=", "<", ">", "≤", "≥", "＜", "＞"] {
        if let Some(rest) = v.strip_prefix(c) {
            return (rest.trim_start(), true);
        }
    }
    (v, false)
}

/// Whether a value field says there is no value: empty, or the placeholders of R, pandas and SQL
/// exports (`NA`, `NaN`, `NULL`, `None`, `N/A`).
fn missing(v: &str) -> bool {
    v.is_empty() || ["na", "nan", "null", "none", "n/a", "#n/a"].iter().any(|m| v.eq_ignore_ascii_case(m))
}

/// A result's value: a number (`1.2`, `1e3`, full-width `１．２`), a censored one read as its limit
/// (`<0.1`, `>= 200`, counted as `censored_value`), else a text result (`陰性`, `2+`, `see comment`):
/// no value, counted as `text_result` (the event is kept, as the MEDS and FHIR readers keep theirs).
fn result(v: &str, field: &'static str, sink: &mut Sink) -> f32 {
    let (number, is_censored) = censored(v);
    let parsed = number.parse::<f32>().ok().filter(|x| x.is_finite()).or_else(|| super::fhir::numeric_string(number));
    match parsed {
        Some(x) => {
            if is_censored {
                sink.report.count(Severity::Info, "censored_value", "csv", field);
            }
            x
        }
        None => {
            sink.report.count(Severity::Info, "text_result", "csv", field);
            f32::NAN
        }
    }
}

fn row(layout: &Layout, rec: &csv::StringRecord, sink: &mut Sink) -> std::result::Result<(), &'static str> {
    if rec.len() != layout.columns() {
        return Err("a row with more or fewer fields than the header");
    }
    let get = |i: usize| rec.get(i).map(str::trim);
    match *layout {
        Layout::Events { subject, time: t, system, code, value, text_value, unit, .. } => {
            let subject = get(subject).filter(|s| !s.is_empty()).ok_or("no subject_id")?;
            let time = parse_time(get(t).ok_or("no time")?).ok_or("unreadable time")?;
            let code = get(code).filter(|s| !s.is_empty()).ok_or("no code")?;
            let named_system = system.and_then(get).filter(|s| !s.is_empty());
            let (system, code) = match (named_system, code.split_once('|')) {
                (Some(s), _) => (s.to_owned(), code.to_owned()),
                (None, Some((s, c))) => (s.to_owned(), c.to_owned()),
                // a bare code: a catalogue test's name or LOINC code (well formed, its check digit
                // right) is that LOINC code; a catalogue JLAC10 code is JLAC10; any other is local
                (None, None) => match catalog::by_name_or_code(code) {
                    Some(l) if l.name == code || (l.loinc == code && catalog::loinc_is_valid(code)) => {
                        (catalog::LOINC.to_owned(), l.loinc.to_owned())
                    }
                    Some(_) if catalog::lookup(catalog::JLAC10, code).is_some() => {
                        (catalog::JLAC10.to_owned(), code.to_owned())
                    }
                    _ => ("medtrain:csv".to_owned(), code.to_owned()),
                },
            };
            let value = match get(value).filter(|v| !missing(v)) {
                Some(v) => result(v, "value", sink),
                None => match text_value.and_then(get).filter(|v| !missing(v)) {
                    Some(v) => result(v, "text_value", sink),
                    None => f32::NAN,
                },
            };
            let unit = unit.and_then(get).filter(|u| !u.is_empty()).map(str::to_owned);
            let kind = match catalog::lookup(&system, &code) {
                Some(l) if l.vital => EventKind::Vital,
                _ => EventKind::Lab,
            };
            sink.push(Rec {
                subject: subject.into(),
                time,
                kind,
                system: system.into(),
                code: code.into(),
                value,
                unit: unit.map(Into::into),
                text: None,
                end: i64::MIN,
            });
        }
        Layout::Notes { subject, time: t, text, .. } => {
            let subject = get(subject).filter(|s| !s.is_empty()).ok_or("no subject_id")?;
            let time = parse_time(get(t).ok_or("no time")?).ok_or("unreadable time")?;
            let mut text = guard::visible(rec.get(text).ok_or("no text")?.to_owned());
            let found = guard::scan(&text);
            if !found.is_empty() {
                for (k, _) in &found {
                    sink.report.identifier(sink.opts.identifiers, *k, "notes.csv", "text");
                }
                text = guard::redact(&text, &found);
            }
            sink.push(Rec {
                subject: subject.into(),
                time,
                kind: EventKind::Note,
                system: "medtrain:note".into(),
                code: "note".into(),
                value: f32::NAN,
                unit: None,
                text: Some(text),
                end: i64::MIN,
            });
        }
    }
    Ok(())
}

/// Reads a CSV file or every `*.csv` under a directory.
pub fn read(path: &Path, opts: &ReadOptions, data: &mut super::Dataset, report: &mut super::Report) -> Result<()> {
    let files = super::input_files(path, super::CSV_EXTS, report)?;
    let mut sink = Sink { data, report, opts };
    for f in files {
        // a labels file in the same directory is not an input of events
        if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("labels")) {
            sink.report.finding(
                Severity::Info,
                "labels_file_skipped",
                "csv",
                "-",
                Some(&f.file_name().unwrap().to_string_lossy()),
                1,
            );
            continue;
        }
        read_file(&f, &mut sink)?;
    }
    Ok(())
}
