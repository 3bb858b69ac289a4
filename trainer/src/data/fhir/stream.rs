//! Reading an export file: blocks of whole lines, parsed in parallel and applied in line order (see
//! the module docs of [`super`]).

use super::{parse_line, LineOut};
use crate::data::{self, check::Severity, guard, DataError, ReadOptions, Result, Sink};
use rayon::prelude::*;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes of whole lines read at a time. Two blocks are held (one applied while the next is parsed),
/// each in a buffer of twice this (16 MiB in all, as one 8 MiB block in a 16 MiB buffer was); a
/// buffer grows past that only while it holds a line longer than a block (up to
/// `read.max_line_bytes`), and shrinks back after.
const BLOCK: usize = 4 << 20;

/// Why a line over `read.max_line_bytes` is malformed.
const LINE_TOO_LONG: &str = "line longer than read.max_line_bytes";

/// A block of input: whole lines (numbered), and what was met while reading them.
#[derive(Default)]
struct Block {
    /// `len` bytes of input; the rest is room kept from block to block (never zeroed again)
    buf: Vec<u8>,
    len: usize,
    /// the end of the block's whole lines: the bytes after it begin the next block
    cut: usize,
    /// (line number, byte range in `buf`) of each line that is not blank
    lines: Vec<(u64, std::ops::Range<usize>)>,
    /// bytes read from the file into this block
    bytes: u64,
    /// numbers of the lines over the bound met (and dropped) before this block's lines
    too_long: Vec<u64>,
    /// numbers of the lines whose lone surrogate escapes were mended ([`super::mend_lone_surrogates`]), in order
    mended: Vec<u64>,
}

impl Block {
    /// The partial line the block ends with.
    fn tail(&self) -> &[u8] {
        &self.buf[self.cut..self.len]
    }
}

/// The lines of one file, read block by block; memory is bounded by the blocks and
/// `read.max_line_bytes`: a line that grows past the bound before its end is seen is recorded as
/// over it, and its bytes are dropped as they arrive.
struct LineReader<R> {
    input: R,
    max_line: usize,
    line_no: u64,
    eof: bool,
    /// inside a line over the bound: its bytes are dropped up to its newline
    skipping: bool,
}

impl LineReader<Box<dyn Read>> {
    /// The lines of the export file at `path` (a `.gz` inflated, bounded by `opts.limits`).
    fn open(path: &Path, opts: &ReadOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let max_line = usize::try_from(opts.limits.max_line_bytes).unwrap_or(usize::MAX);
        let input = data::bounded::open(path, file, opts.limits);
        Ok(LineReader { input, max_line, line_no: 0, eof: false, skipping: false })
    }
}

/// A read error of `path` after line `line_no`, as the readers say it.
fn io_error(path: &Path, line_no: u64, e: std::io::Error) -> DataError {
    DataError::io(path, format!("after line {line_no}: {e}"))
}

impl<R: Read> LineReader<R> {
    /// Fills `block` with `carry` (the partial line the previous block ended with) and what follows,
    /// up to at least one block of whole lines or the end of the input.
    fn fill(&mut self, block: &mut Block, carry: &[u8]) -> std::io::Result<()> {
        block.lines.clear();
        block.too_long.clear();
        block.mended.clear();
        block.bytes = 0;
        block.cut = 0;
        if block.buf.len() > 2 * BLOCK && carry.len() <= BLOCK {
            // grown for a long line: back to a block's room, so that only a block holding such a
            // line is that large
            block.buf.truncate(2 * BLOCK);
            block.buf.shrink_to_fit();
        }
        if block.buf.len() < carry.len() {
            block.buf.resize(carry.len(), 0);
        }
        block.buf[..carry.len()].copy_from_slice(carry);
        block.len = carry.len();
        while !self.eof {
            let start = block.len;
            let want = start.max(BLOCK) + BLOCK;
            if block.buf.len() < want {
                block.buf.resize(want, 0);
            }
            let mut filled = start;
            while filled < want {
                match self.input.read(&mut block.buf[filled..want]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // the error names the last whole line read (a gzip cut short after half its lines
                        // said "after line 0")
                        self.line_no += memchr::memchr_iter(b'\n', &block.buf[..filled]).count() as u64;
                        return Err(e);
                    }
                }
            }
            block.len = filled;
            block.bytes += (filled - start) as u64;
            if self.skipping {
                match memchr::memchr(b'\n', &block.buf[..block.len]) {
                    Some(i) => {
                        block.buf.copy_within(i + 1..block.len, 0);
                        block.len -= i + 1;
                        self.skipping = false;
                    }
                    None => {
                        block.len = 0;
                        continue;
                    }
                }
            }
            let data = &block.buf[..block.len];
            let cut = if self.eof { data.len() } else { memchr::memrchr(b'\n', data).map_or(0, |i| i + 1) };
            if cut == 0 && !self.eof {
                if block.len > self.max_line {
                    // a line over the bound with no end in sight: record it now, drop it as it streams
                    self.line_no += 1;
                    block.too_long.push(self.line_no);
                    block.len = 0;
                    self.skipping = true;
                }
                continue; // a line longer than the buffer: read on
            }
            let mut at = 0;
            while at < cut {
                let end = memchr::memchr(b'\n', &data[at..cut]).map_or(cut, |i| at + i);
                self.line_no += 1;
                let (mut from, mut to) = (at, end);
                if self.line_no == 1 && data[from..to].starts_with(b"\xEF\xBB\xBF") {
                    from += 3;
                }
                if data[from..to].ends_with(b"\r") {
                    to -= 1;
                }
                if !data[from..to].iter().all(u8::is_ascii_whitespace) {
                    block.lines.push((self.line_no, from..to));
                }
                at = end + 1;
            }
            block.cut = cut;
            // (a line without a `\u` escape is passed over in one search)
            for (n, r) in block.lines.iter().filter(|(_, r)| r.len() <= self.max_line) {
                if super::mend_lone_surrogates(&mut block.buf[r.clone()]) > 0 {
                    block.mended.push(*n);
                }
            }
            return Ok(());
        }
        Ok(())
    }
}

/// The lines of a block, parsed in parallel; each result borrows from its line.
fn parse_block<'b>(block: &'b Block, opts: &ReadOptions, max_line: usize) -> Vec<LineOut<'b>> {
    block
        .lines
        .par_iter()
        .with_min_len(64)
        .map(|(_, r)| {
            let l = &block.buf[r.clone()];
            if l.len() > max_line {
                LineOut::bad(LINE_TOO_LONG)
            } else {
                parse_line(l, opts)
            }
        })
        .collect()
}

/// Applies a parsed block to the sink, in line order.
fn apply_block(sink: &mut Sink, file: &str, block: &Block, outs: Vec<LineOut<'_>>) {
    sink.report.bytes += block.bytes;
    for n in &block.too_long {
        sink.report.lines += 1;
        sink.report.malformed_line(file, *n, LINE_TOO_LONG);
    }
    sink.report.lines += block.lines.len() as u64;
    let mut mended = block.mended.iter().peekable();
    for ((n, _), out) in block.lines.iter().zip(outs) {
        if mended.next_if_eq(&n).is_some() {
            mended_found(sink, file, *n, &out);
        }
        apply(sink, file, *n, out);
    }
}

/// Applies `cur` (its lines parsed into `outs`) to the sink on a worker while this thread reads the
/// next block into `next`, then parses `next` on the workers (the parse overlaps the end of the
/// apply). Returns `next` and its parsed lines, or the read error (`cur` applied all the same).
fn step<'n, R: Read>(
    sink: &mut Sink,
    file: &str,
    reader: &mut LineReader<R>,
    cur: &Block,
    outs: Vec<LineOut<'_>>,
    next: &'n mut Block,
    opts: &ReadOptions,
) -> std::io::Result<(&'n Block, Vec<LineOut<'n>>)> {
    let max_line = reader.max_line;
    let mut parsed = Vec::new();
    let slot = &mut parsed;
    // the reader stays on this thread (a gzip reader is not Send)
    let next = rayon::in_place_scope(move |s| {
        s.spawn(move |_| apply_block(sink, file, cur, outs));
        reader.fill(next, cur.tail())?;
        let next: &'n Block = next;
        s.spawn(move |_| *slot = parse_block(next, opts, max_line));
        Ok::<_, std::io::Error>(next)
    })?;
    Ok((next, parsed))
}

/// Reads one NDJSON file (optionally gzip-compressed) into the sink.
///
/// Memory is bounded by the blocks and `read.max_line_bytes` (see [`LineReader`]). While a block's
/// lines are applied to the sink (sequential, in line order), the next block is read and then parsed
/// (in parallel): the two blocks take turns.
pub fn read_file(path: &Path, sink: &mut Sink) -> Result<()> {
    let before = sink.data.binaries;
    read_file_only(path, sink)?;
    // the notes it links to Binaries: read from its own, or said
    let files: &[&Path] = if sink.data.binaries > before { &[path] } else { &[] };
    read_url_notes(sink, files)
}

/// [`read_file`] without reading the notes that link Binaries ([`read`] reads them after every file).
fn read_file_only(path: &Path, sink: &mut Sink) -> Result<()> {
    let name = sink.report.file_label(path);
    read_lines(path, &name, sink)
}

/// [`read_file`], its findings naming the file `name`.
fn read_lines(path: &Path, name: &str, sink: &mut Sink) -> Result<()> {
    let opts = sink.opts;
    let mut reader = LineReader::open(path, opts)?;
    let max_line = reader.max_line;
    let io_error = |line_no: u64, e: std::io::Error| io_error(path, line_no, e);
    let (mut a, mut b) = (Block::default(), Block::default());
    reader.fill(&mut a, &[]).map_err(|e| io_error(reader.line_no, e))?;
    let mut filled_a: &Block = &a;
    let mut outs_a = parse_block(filled_a, opts, max_line);
    // unrolled in two halves (a then b, b then a): each block's results borrow from it
    loop {
        if reader.eof {
            apply_block(sink, name, filled_a, outs_a);
            break;
        }
        let (filled_b, outs_b) =
            step(sink, name, &mut reader, filled_a, outs_a, &mut b, opts).map_err(|e| io_error(reader.line_no, e))?;
        if reader.eof {
            apply_block(sink, name, filled_b, outs_b);
            break;
        }
        (filled_a, outs_a) =
            step(sink, name, &mut reader, filled_b, outs_b, &mut a, opts).map_err(|e| io_error(reader.line_no, e))?;
    }
    sink.report.files += 1;
    Ok(())
}

/// Why a `.json` document is not read.
const DOCUMENT_TOO_LONG: &str = "a .json document longer than read.max_line_bytes";

/// Reads one JSON document (`.json`, `.json.gz`: a Bundle, as Synthea and FHIR servers write them, or
/// one resource) into the sink: a line of its own as far as `read.max_line_bytes` is concerned, its
/// entries' findings at the lines their resources start on.
/// `k`: its place in name order among the input's documents (its findings' name, `document-K`).
fn read_document(path: &Path, k: usize, sink: &mut Sink) -> Result<()> {
    let mut bytes = Vec::new();
    let (name, mended) = load_document(path, sink.opts, &mut bytes, k)?;
    let out = parse_document(&bytes, sink.opts);
    apply_document(sink, (name, path, bytes.len(), out, mended))
}

/// A document's bytes into `buf` (at most `read.max_line_bytes` + 1 of them); returns the name its
/// findings give it: `document-K`, its place in name order, never the file's name (a document is
/// one patient's record, and exporters name it after the patient: `Yamada_Taro.json`).
/// With it, whether lone surrogate escapes were mended in it ([`super::mend_lone_surrogates`]).
fn load_document(path: &Path, opts: &ReadOptions, buf: &mut Vec<u8>, k: usize) -> Result<(String, bool)> {
    buf.clear();
    let name = format!("document-{k}");
    // an error names the document as findings do (a gzip that ends early printed Smith_John.json.gz)
    let err = |e: std::io::Error| DataError::Io {
        path: PathBuf::from(&name),
        msg: format!("{e} (the input's .json document {k} in name order)"),
    };
    read_whole(path, opts, buf).map_err(err)?;
    Ok((name, super::mend_lone_surrogates(buf) > 0))
}

/// A file's bytes (inflated where it is a `.gz`) into `buf`, at most `read.max_line_bytes` + 1 of
/// them: a document, or an NDJSON file of pretty-printed resources, read whole.
fn read_whole(path: &Path, opts: &ReadOptions, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    data::bounded::open(path, file, opts.limits).take(opts.limits.max_line_bytes.saturating_add(1)).read_to_end(buf)?;
    Ok(())
}

/// A loaded document parsed (`None` when it is over `read.max_line_bytes`).
/// With it, the resources a document that is not read held (its `"resourceType"` keys, at least 1):
/// its weight among the malformed lines, where one lost document is a patient's whole record.
/// A document that is NDJSON (a bulk export's file saved with a `.json` name) is `Lines`: read as
/// NDJSON is.
fn parse_document<'b>(bytes: &'b [u8], opts: &ReadOptions) -> Document<'b> {
    let weight = || memchr::memmem::find_iter(bytes, b"\"resourceType\"").count().max(1) as u64;
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.len() as u64 > opts.limits.max_line_bytes {
        return if is_ndjson(text) { Document::Lines } else { Document::Parsed(None, weight()) };
    }
    let out = parse_line(text, opts);
    if out.bad.is_some() && is_ndjson(text) {
        return Document::Lines;
    }
    // a JSON object that names no resource anywhere: a bulk export's manifest.json, a client's settings
    if out.bad == Some("no resourceType") && memchr::memmem::find(bytes, b"\"resourceType\"").is_none() {
        return Document::NotFhir;
    }
    let w = if out.bad.is_some() { weight() } else { 1 };
    Document::Parsed(Some(out), w)
}

/// What a loaded document gave.
enum Document<'b> {
    /// parsed (`None` when it is over `read.max_line_bytes`), with its weight among malformed lines
    Parsed(Option<LineOut<'b>>, u64),
    /// NDJSON under a `.json` name
    Lines,
    /// a JSON object with no `resourceType` in it (a bulk export's `manifest.json`): not read, and said
    NotFhir,
}

/// Whether a document's text is NDJSON: its first line that is not blank a whole JSON object with a
/// `resourceType`, and more than blanks after that line (a document written on one line is one
/// line; a pretty-printed one's first line is no whole object).
fn is_ndjson(text: &[u8]) -> bool {
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
    let Some(end) = memchr::memchr(b'\n', &text[start..]).map(|i| start + i) else { return false };
    text[end..].iter().any(|b| !b.is_ascii_whitespace())
        && matches!(super::from_line::<super::Peek>(&text[start..end]), Ok(super::Peek { resource_type: Some(_) }))
}

/// A parsed document applied to the sink, and counted; one that is NDJSON read from its file as NDJSON
/// is, its findings naming it as the document it is (`document-K`), and said (`ndjson_in_json_file`).
fn apply_document(sink: &mut Sink, (name, path, len, doc, mended): Parsed<'_, '_>) -> Result<()> {
    let (out, weight) = match doc {
        Document::Parsed(out, weight) => (out, weight),
        Document::Lines => {
            sink.report.finding(Severity::Info, "ndjson_in_json_file", "input", "file", Some(&name), 1);
            return read_lines(path, &name, sink);
        }
        Document::NotFhir => {
            // (named as a document is, never by its file name: `manifest.json` is document-K too)
            sink.report.finding(Severity::Warning, "not_fhir_file", "input", "file", Some(&name), 1);
            return Ok(());
        }
    };
    sink.report.bytes += len as u64;
    sink.report.lines += weight;
    sink.report.files += 1;
    if let (Some(out), true) = (&out, mended) {
        mended_found(sink, &name, 1, out);
    }
    match out {
        Some(out) if out.bad.is_none() => apply(sink, &name, 1, out),
        Some(out) => sink.report.malformed_lines(&name, 1, out.bad.unwrap_or("not JSON"), weight),
        None => sink.report.malformed_lines(&name, 1, DOCUMENT_TOO_LONG, weight),
    }
    Ok(())
}

/// A document loaded and parsed: its name, its file, its length, what it gave, whether lone
/// surrogates were mended in it.
type Parsed<'b, 'p> = (String, &'p Path, usize, Document<'b>, bool);

/// Applies `cur` on a worker while this thread loads `path` into `next` and parses it (a document's
/// entries are parsed in parallel: the two overlap as an NDJSON file's blocks do).
fn document_step<'n, 'p>(
    sink: &mut Sink,
    cur: Parsed<'_, '_>,
    (k, path): (usize, &'p Path),
    next: &'n mut Vec<u8>,
) -> Result<Parsed<'n, 'p>> {
    let opts = sink.opts;
    let mut applied = Ok(());
    let parsed = rayon::in_place_scope(|s| {
        let applied = &mut applied;
        s.spawn(move |_| *applied = apply_document(sink, cur));
        let (name, mended) = load_document(path, opts, next, k)?;
        let next: &'n Vec<u8> = next;
        Ok((name, path, next.len(), parse_document(next, opts), mended))
    });
    applied?;
    parsed
}

/// Reads JSON documents in order, the next loaded and parsed while one is applied.
fn read_documents(files: &[std::path::PathBuf], sink: &mut Sink) -> Result<()> {
    let opts = sink.opts;
    let mut files = files.iter().enumerate().map(|(i, p)| (i + 1, p.as_path()));
    let Some((k, first)) = files.next() else { return Ok(()) };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (name, mended) = load_document(first, opts, &mut a, k)?;
    let mut parsed_a: Parsed = (name, first, a.len(), parse_document(&a, opts), mended);
    // unrolled in two halves (a then b, b then a): each document's output borrows from its buffer
    loop {
        let Some(path) = files.next() else { return apply_document(sink, parsed_a) };
        let parsed_b = document_step(sink, parsed_a, path, &mut b)?;
        let Some(path) = files.next() else { return apply_document(sink, parsed_b) };
        parsed_a = document_step(sink, parsed_b, path, &mut a)?;
    }
}

/// Reads an input file: a `.json` document ([`read_document`]) or NDJSON ([`read_file`]); an NDJSON
/// file whose first line is a JSON object with no `resourceType` holds no FHIR resources (a bulk
/// export client's `log.ndjson`): not read, and said (`not_fhir_file`, a warning naming it).
/// `documents`: the place in name order of each `.json` document of the input (its findings' name).
fn read_any(path: &Path, documents: &HashMap<&Path, usize>, sink: &mut Sink) -> Result<()> {
    if data::has_ext(path, data::FHIR_JSON_EXTS) {
        return read_document(path, documents.get(path).copied().unwrap_or(1), sink);
    }
    match first_lines(path, sink.opts)? {
        FirstLines::NotFhir => {
            let name = path.file_name().map_or_else(String::new, |n| guard::shown_path(&n.to_string_lossy()));
            sink.report.finding(Severity::Warning, "not_fhir_file", "input", "file", Some(&name), 1);
            Ok(())
        }
        FirstLines::Pretty => read_pretty(path, sink),
        FirstLines::Fhir => read_file_only(path, sink),
    }
}

/// What an NDJSON file's first lines say it holds.
enum FirstLines {
    Fhir,
    /// JSON objects without `resourceType` (a bulk export client's `log.ndjson`)
    NotFhir,
    /// a first line that is `{` alone: resources written over many lines each
    Pretty,
}

/// Reads an NDJSON file whose resources are pretty-printed over many lines (a tool's "NDJSON" written
/// with an indent: every line was a malformed line, and the hint was nowhere): as the sequence of JSON
/// values it is, each resource at the line it starts on, up to `read.max_line_bytes` for the whole
/// file; said (`pretty_printed_ndjson`, info).
fn read_pretty(path: &Path, sink: &mut Sink) -> Result<()> {
    let name = sink.report.file_label(path);
    let mut bytes = Vec::new();
    read_whole(path, sink.opts, &mut bytes).map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > sink.opts.limits.max_line_bytes {
        sink.report.files += 1;
        sink.report.bytes += bytes.len() as u64;
        sink.report.lines += 1;
        sink.report.malformed_line(&name, 1, PRETTY_TOO_LONG);
        return Ok(());
    }
    let from = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    // a sequence of JSON values to its end, or the file is read as the lines it has (each one that is
    // no resource a malformed line, where it is): each value's place first
    let mut places = Vec::new();
    {
        let text = &bytes[from..];
        let mut values = serde_json::Deserializer::from_slice(text).into_iter::<serde::de::IgnoredAny>();
        let (mut end, mut line) = (0, 1u64);
        loop {
            let next = values.next();
            let start = end + text[end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
            line += memchr::memchr_iter(b'\n', &text[end..start]).count() as u64;
            match next {
                None => break,
                Some(Ok(_)) => {
                    end = values.byte_offset();
                    places.push((from + start..from + end, line));
                    line += memchr::memchr_iter(b'\n', &text[start..end]).count() as u64;
                }
                Some(Err(_)) => return read_file_only(path, sink),
            }
        }
    }
    sink.report.files += 1;
    sink.report.bytes += bytes.len() as u64;
    sink.report.finding(Severity::Info, "pretty_printed_ndjson", "input", "file", Some(&name), 1);
    for (range, line) in places {
        // (mended resource by resource: said where one was)
        let mended = super::mend_lone_surrogates(&mut bytes[range.clone()]) > 0;
        let out = parse_line(&bytes[range], sink.opts);
        sink.report.lines += 1;
        if mended {
            mended_found(sink, &name, line, &out);
        }
        apply(sink, &name, line, out);
    }
    Ok(())
}

/// Why a pretty-printed NDJSON file is not read.
const PRETTY_TOO_LONG: &str = "pretty-printed JSON (a resource over many lines) longer than read.max_line_bytes";

/// Whether an NDJSON file holds FHIR resources, as its first lines that are not blank show (up to 8
/// of them, as far as the first MiB holds whole ones): `false` only when each is a JSON object
/// without `resourceType` (one stray line at the top of a real export is read, and counted).
fn first_lines(path: &Path, opts: &ReadOptions) -> Result<FirstLines> {
    const PEEK: u64 = 1 << 20;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut start = Vec::new();
    // a file that cannot be read here fails the same way in read_file, which says so
    if data::bounded::open(path, file, opts.limits).take(PEEK).read_to_end(&mut start).is_err() {
        return Ok(FirstLines::Fhir);
    }
    // the last line is whole when the file ended within the peek
    let all = (start.len() as u64) < PEEK;
    let start = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&start);
    let mut lines: Vec<&[u8]> = start.split(|&b| b == b'\n').collect();
    if !all {
        lines.pop();
    }
    let mut seen = 0;
    for (i, line) in lines.into_iter().filter(|l| !l.iter().all(u8::is_ascii_whitespace)).take(8).enumerate() {
        // an object opened alone on the first line, as an indenting writer starts one
        if i == 0 && line.trim_ascii() == b"{" {
            return Ok(FirstLines::Pretty);
        }
        let not_fhir = line.trim_ascii().starts_with(b"{")
            && matches!(super::from_line::<super::Peek>(line), Ok(super::Peek { resource_type: None }));
        if !not_fhir {
            return Ok(FirstLines::Fhir);
        }
        seen += 1;
    }
    Ok(if seen == 0 { FirstLines::Fhir } else { FirstLines::NotFhir })
}

/// Reads one NDJSON line (number `line` of `file`) into the sink, as [`read_file`] does with each line.
/// A note linking a Binary elsewhere is said (`note_by_url`): a line alone has no Binaries to read.
pub fn read_line(sink: &mut Sink, file: &str, line: u64, bytes: &[u8]) {
    let mut bytes = bytes.to_vec();
    let mended = super::mend_lone_surrogates(&mut bytes) > 0;
    let out = parse_line(&bytes, sink.opts);
    if mended {
        mended_found(sink, file, line, &out);
    }
    apply(sink, file, line, out);
    // (with no files to read, it cannot fail)
    let _ = read_url_notes(sink, &[]);
}

/// Says that line `line` of `file` held lone surrogate escapes, mended (`lone_surrogate`, a warning
/// where it was found: the string that held one has a private-use character in its place).
fn mended_found(sink: &mut Sink, file: &str, line: u64, out: &LineOut<'_>) {
    // (a line that did not parse names no resource: said of the input)
    let resource = out.resource.unwrap_or("input");
    sink.report.reading(file, line);
    sink.report.count_at(Severity::Warning, "lone_surrogate", resource, "string");
    sink.report.reading("", 0);
}

fn apply(sink: &mut Sink, file: &str, line: u64, mut out: LineOut<'_>) {
    // a Bundle's entries, each as the line of its own it would be (at the line it starts on, and
    // counted as one: the tolerated fraction of malformed lines is of resources, not of documents)
    let pending = std::mem::take(&mut out.entries);
    let (notes_at, binaries_at) = (sink.data.url_notes.len(), sink.data.bundle_binaries.len());
    sink.data.bundle_depth += u32::from(!pending.is_empty());
    for chunk in pending.chunks(super::ENTRY_CHUNK) {
        for (below, entry) in super::parse_pending(chunk, sink.opts) {
            sink.report.lines += 1;
            apply(sink, file, line + below, entry);
        }
    }
    if !pending.is_empty() {
        sink.data.bundle_depth -= 1;
        // notes of the Bundle whose text is in its Binaries (in either order in it; in Bundles inside
        // it too)
        let outermost = sink.data.bundle_depth == 0;
        settle_bundle_notes(sink, file, line, (notes_at, binaries_at), outermost);
    }
    if let Some(reason) = out.bad {
        sink.report.malformed_line(file, line, reason);
        return;
    }
    if let Some(rt) = out.resource.filter(|_| !out.late) {
        sink.report.count_resource(rt);
        // (a Bundle's Binary is kept with it, not read again from its file)
        if rt == "Binary" && out.binary.is_none() {
            sink.data.binaries += 1;
        }
    }
    if let Some(b) = out.binary.take() {
        sink.data.bundle_binaries.push(b);
    }
    if let Some(note) = out.by_url.take() {
        sink.data.url_notes.push(note);
    }
    sink.report.zones.merge(out.zones);
    // a note read before from the other of a DocumentReference and a DiagnosticReport (Synthea writes
    // each note as both): not read again, nor its text's findings counted again
    let both = matches!(out.resource, Some("DocumentReference" | "DiagnosticReport"));
    let report = out.resource == Some("DiagnosticReport");
    let copies: SmallVec<[Option<NoteMatch>; 1]> = out
        .recs
        .iter()
        .map(|r| (both && r.kind == data::EventKind::Note).then(|| read_before(sink, report, r)))
        .collect();
    let copy = copies.iter().any(|c| matches!(c, Some(NoteMatch::Copy(..))));
    // (the findings of the line's resource are said at the line)
    sink.report.reading(file, line);
    for (kind, resource, field) in out.identifiers {
        if copy && matches!(field, "content.attachment.data" | "presentedForm.data" | "conclusion") {
            continue;
        }
        sink.report.identifier(sink.opts.identifiers, kind, resource, field);
    }
    for (severity, kind, resource, field) in out.info {
        sink.report.count_at(severity, kind, resource, field);
    }
    sink.report.reading("", 0);
    if let Some((subject, site)) = out.site {
        let s = sink.subject(&subject);
        sink.data.sites.insert(s, site);
    }
    if let Some(id) = out.patient {
        let s = sink.subject(&id);
        if !sink.data.patients.insert(s) {
            sink.report.count(Severity::Warning, "duplicate_patient", "Patient", "id");
        }
        for other in &out.links {
            let o = sink.subject(other);
            sink.data.links.push((s, o));
        }
    }
    let linked: Vec<&String> = out.related_patients.iter().filter(|(r, _)| *r == "Person").map(|(_, p)| p).collect();
    if linked.len() > 1 {
        sink.data.subject_identifiers.same_person.push(linked.into_iter().cloned().collect());
    }
    for (resource, patient) in out.related_patients {
        *sink.data.subject_identifiers.related.entry((resource, patient)).or_default() += 1;
    }
    for id in out.uuid_links {
        sink.data.subject_identifiers.uuid_linked.insert(guard::subject::subject_key(&id));
    }
    if let Some(id) = out.not_patient {
        sink.data.subject_identifiers.not_patients.insert(guard::subject::subject_key(&id));
    }
    for (subject, values) in out.own {
        let store = &mut sink.data.subject_identifiers;
        let mut added = false;
        for (kind, value) in values {
            added |= store.add(&subject, kind, &value);
        }
        // identifiers the subject did not have (its Patient resource, or a RelatedPerson after the
        // Patient): notes of this subject read before now are checked at the end of the read
        if added {
            store.arrivals.push((subject.clone(), sink.data.events.len()));
            // (when events are kept, only free text that is not kept is noted: see below)
            if store.noted_before.contains(&guard::subject::subject_key(&subject)) {
                store.recheck = true;
            }
        }
    }
    // free text that is not kept (`Observation.note`): searched for its subject's own identifiers now,
    // or, when they are not known yet, by a second pass if they arrive later (events kept or not: the
    // text is gone by then)
    // (noted whether identifiers are known or not: a RelatedPerson may bring more later)
    for (subject, texts) in out.unkept {
        let store = &mut sink.data.subject_identifiers;
        if store.has(&subject) {
            for (resource, field, text) in texts {
                for (kind, _) in guard::merge(store.find(&subject, &text, &mut 0)) {
                    sink.report.identifier(sink.opts.identifiers, kind, resource, field);
                }
            }
        }
        store.noted_before.insert(guard::subject::subject_key(&subject));
    }
    let (version, first_event, deletes) = (out.version, sink.data.events.len(), std::mem::take(&mut out.deletes));
    for (mut r, matched) in out.recs.into_iter().zip(copies) {
        if let Some(NoteMatch::Copy(key, original)) = matched {
            sink.report.count(Severity::Info, "note_in_document_reference", "DiagnosticReport", "presentedForm");
            // kept as the original's event again (its text, redacted as it was; not counted again) for
            // as long as the read lasts: where a later version replaces the original's resource and not
            // this one, this one's note stays (it was lost with the original); else it is dropped
            if let Some(&e) = sink.data.events.get(original as usize).filter(|_| sink.opts.keep_events) {
                if let Ok(at) = u32::try_from(sink.data.events.len()) {
                    sink.data.versions.notes.push((key, at, report, true));
                }
                sink.data.events.push(e);
            }
            continue;
        }
        let before = sink.data.events.len();
        let mut redacted = None;
        if let Some(text) = r.text.as_deref() {
            if sink.data.subject_identifiers.has(&r.subject) {
                let found = guard::merge(sink.data.subject_identifiers.find(&r.subject, text, &mut 0));
                if !found.is_empty() {
                    for (kind, _) in &found {
                        sink.report.identifier(sink.opts.identifiers, *kind, "note", "subject_identifier");
                    }
                    redacted = Some(guard::redact(text, &found));
                }
            }
            if !sink.opts.keep_events {
                sink.data.subject_identifiers.noted_before.insert(guard::subject::subject_key(&r.subject));
            }
        }
        if redacted.is_some() {
            r.text = redacted;
        }
        sink.push(r);
        // the note's event, for a copy of it read later
        if let (Some(NoteMatch::First(key)), true) = (matched, sink.data.events.len() > before) {
            let at = u32::try_from(before).unwrap_or(u32::MAX);
            if let Some(sides) = sink.data.report_notes.get_mut(&key) {
                sides[usize::from(report)].1 = at;
            }
            if at != u32::MAX {
                sink.data.versions.notes.push((key, at, report, false));
            }
        }
    }
    if let (Some(v), Some(rt)) = (version, out.resource) {
        sink.data.versions.read(rt, v, first_event..sink.data.events.len());
    }
    for (resource, id, rank) in &deletes {
        sink.data.versions.delete(resource, id, rank.to_owned());
    }
}

/// Whether a note of a DocumentReference (`report` false) or a DiagnosticReport (`report` true) was
/// read before from the other (the same subject, time and text: Synthea writes each note as both, a
/// server may give a report's text as a DocumentReference too), each note of one matched with one of
/// the other at most. Notes repeated within one type are not matched here (they are the input's
/// duplicates, counted as such).
///
/// Returns the original's event (`u32::MAX` where there is none: events not kept) for a copy, else the
/// note's key, whose event [`apply`] records once it is pushed.
fn read_before(sink: &mut Sink, report: bool, r: &data::Rec) -> NoteMatch {
    use std::hash::{Hash, Hasher};
    let half = |seed: u8| {
        let mut h = std::hash::DefaultHasher::new();
        (seed, &*r.subject, r.time, r.text.as_deref()).hash(&mut h);
        h.finish() as u128
    };
    let key = half(0) << 64 | half(1);
    // [documents, reports] of the note read and not yet matched: how many, and the event of the one read
    // last (16 bytes a note); a pair matched is forgotten
    let (mine, other) = (usize::from(report), usize::from(!report));
    let sides = sink.data.report_notes.entry(key).or_insert([(0, u32::MAX); 2]);
    if sides[other].0 == 0 {
        sides[mine] = (sides[mine].0 + 1, u32::MAX);
        return NoteMatch::First(key);
    }
    // (the one read last: of two versions of one report holding the note, the later; the one before
    // it is no longer known, and a copy of it is read once, as before)
    let original = std::mem::replace(&mut sides[other].1, u32::MAX);
    sides[other].0 -= 1;
    if sides[0].0 == 0 && sides[1].0 == 0 {
        sink.data.report_notes.remove(&key);
    }
    NoteMatch::Copy(key, original)
}

/// What [`read_before`] found of a note.
#[derive(Clone, Copy)]
enum NoteMatch {
    /// read before from the other resource type: the note's key, and that note's event
    Copy(u128, u32),
    /// the first of its kind: its key in `Dataset::report_notes`
    First(u128),
}

/// The (resource, field) of the findings of a subject's own identifiers in its free text: the notes
/// kept, and the free text that is not ([`super::scan_only`]).
const OWN_IDENTIFIER_FINDINGS: [(&str, &str); 10] = [
    ("note", "subject_identifier"),
    ("Observation", "note.text.subject_identifier"),
    ("Observation", "valueString.subject_identifier"),
    ("DocumentReference", "description.subject_identifier"),
    ("DocumentReference", "content.attachment.title.subject_identifier"),
    ("DiagnosticReport", "presentedForm.title.subject_identifier"),
    ("Observation", "text.div.subject_identifier"),
    ("DocumentReference", "text.div.subject_identifier"),
    ("DiagnosticReport", "text.div.subject_identifier"),
    ("Encounter", "text.div.subject_identifier"),
];

/// What a Binary a note names gave.
enum Got {
    NotText,
    /// text in a charset the reader does not know, data that is not base64, no RTF
    Undecodable,
    /// (whether its charset was guessed)
    Text(super::Form, String, bool),
}

/// The text of a Binary a note links: its own content type says what its bytes are (the attachment's
/// only where the Binary gives none).
fn link_text(link_ct: &str, bin_ct: Option<&str>, data: Option<&str>) -> Got {
    let ct = bin_ct.map(str::trim).filter(|c| !c.is_empty()).unwrap_or(link_ct);
    match (super::text_form(ct), data) {
        (Some(form), Some(data)) => match super::attachment_text(form, ct, data) {
            Ok(Some((t, guessed))) => Got::Text(form, t, guessed),
            _ => Got::Undecodable,
        },
        _ => Got::NotText,
    }
}

/// A note whose Binaries were read applied as its DocumentReference's would have been (the guard, the
/// subject's own identifiers, a report's copy), in the first form of plain text, HTML and RTF its
/// Binaries have; at `line` of `file` (where its last Binary was).
fn emit_url_note(sink: &mut Sink, file: &str, line: u64, n: &super::UrlNote, got: impl Iterator<Item = Got>) {
    let resource = n.resource;
    let (data_field, type_field) = n.fields();
    let mut out = LineOut { resource: Some(resource), late: true, version: n.version, ..Default::default() };
    let mut texts = Vec::new();
    for g in got {
        match g {
            Got::Text(form, t, guessed) if !t.trim().is_empty() => {
                if guessed {
                    out.info_once(Severity::Warning, "guessed_charset", resource, type_field);
                }
                texts.push((form, t))
            }
            Got::Text(..) => {}
            Got::Undecodable => out.info_once(Severity::Warning, "undecodable_note", resource, type_field),
            Got::NotText => {}
        }
    }
    let text = texts.iter().map(|t| t.0).min().map(|best| {
        let text: Vec<String> = texts.into_iter().filter(|t| t.0 == best).map(|t| t.1).collect();
        super::guard_text(text.join("\n"), resource, data_field, &mut out)
    });
    // (a report's conclusion, guarded when its line was read)
    let text = match (text, n.also.as_deref()) {
        (Some(t), Some(also)) if !t.contains(also.trim()) => Some(t + "\n" + also),
        (None, Some(also)) => Some(also.to_owned()),
        (t, _) => t,
    };
    if let Some(text) = text {
        let code = (n.system.as_str().into(), n.code.as_str().into());
        out.recs.push(data::Rec::note(n.subject.as_str().into(), n.time, code, text));
    } else {
        out.no_text_attachment(resource, type_field);
    }
    apply(sink, file, line, out);
}

/// The notes read from a Bundle (those after `notes_at`, its inner Bundles' unsettled ones among them)
/// that link Binaries of the Bundle (those after `binaries_at`, its inner Bundles' among them): read
/// from them. Each Bundle settles its own notes first, innermost first (a searchset of two patients'
/// documents, each with a `Binary/1`: each note reads its own document's). A key two Binaries in
/// scope have is not read (`duplicate_binary`: which one is meant is not known); the notes left go to
/// the Bundle around this one, else to the export's Binaries. The Binaries are let go when the
/// outermost Bundle ends (`outermost`).
fn settle_bundle_notes(
    sink: &mut Sink,
    file: &str,
    line: u64,
    (notes_at, binaries_at): (usize, usize),
    outermost: bool,
) {
    if sink.data.bundle_binaries.len() > binaries_at && sink.data.url_notes.len() > notes_at {
        let notes = sink.data.url_notes.split_off(notes_at);
        // key -> (Binaries in scope with it, the first)
        let mut keys: HashMap<&str, (u32, usize)> = HashMap::new();
        for (i, b) in sink.data.bundle_binaries.iter().enumerate().skip(binaries_at) {
            for k in &b.keys {
                keys.entry(k.as_str()).and_modify(|e| e.0 += 1).or_insert((1, i));
            }
        }
        let mut twice = 0;
        let mut read: Vec<(super::UrlNote, Vec<Got>)> = Vec::new();
        let mut left = Vec::new();
        for n in notes {
            let mut got = Vec::new();
            for (key, ct) in &n.links {
                match keys.get(key.as_str()) {
                    Some(&(1, i)) => {
                        let b = &sink.data.bundle_binaries[i];
                        got.push(link_text(ct, b.content_type.as_deref(), b.data.as_deref()));
                    }
                    Some(_) => twice += 1,
                    None => {}
                }
            }
            if got.is_empty() {
                left.push(n);
            } else {
                read.push((n, got));
            }
        }
        drop(keys);
        for _ in 0..twice {
            sink.report.count(Severity::Warning, "duplicate_binary", "Binary", "id");
        }
        sink.data.url_notes.extend(left);
        for (n, got) in read {
            emit_url_note(sink, file, line, &n, got.into_iter());
        }
    }
    if outermost {
        sink.data.bundle_binaries.truncate(binaries_at);
    }
}

/// Reads the notes whose text is in Binaries of the export ([`super::UrlNote`]: a DocumentReference's
/// attachment by `url` to `Binary/id`, as EHR bulk exports give notes) from `files`, the NDJSON files
/// that hold Binaries, after the other resources: a Binary is decoded only when a note names it, and
/// each note is applied ([`emit_url_note`]) once every Binary it names is read. A note whose Binaries
/// are not in the export is said (`note_by_url`, a warning). A Binary id met again while notes are
/// still read is said (`duplicate_binary`: the first is read).
fn read_url_notes(sink: &mut Sink, files: &[&Path]) -> Result<()> {
    let notes = std::mem::take(&mut sink.data.url_notes);
    if notes.is_empty() {
        return Ok(());
    }
    // Binary id -> (note, link) that name it
    let mut wanted: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (i, n) in notes.iter().enumerate() {
        for (j, (id, _)) in n.links.iter().enumerate() {
            wanted.entry(id.as_str()).or_default().push((i, j));
        }
    }
    // per note: what each link gave (`None`: not read yet), the links not yet read
    let mut got: Vec<Vec<Option<Got>>> =
        notes.iter().map(|n| std::iter::repeat_with(|| None).take(n.links.len()).collect()).collect();
    let mut left: Vec<usize> = notes.iter().map(|n| n.links.len()).collect();
    let mut done = vec![false; notes.len()];
    let mut read = std::collections::HashSet::new();
    for path in files {
        // (a Binary id met again after every note was read is not said: the files are not read on
        // for it, as they may be large)
        if done.iter().all(|d| *d) {
            break;
        }
        let name = sink.report.file_label(path);
        let mut reader = LineReader::open(path, sink.opts)?;
        let io_error = |line_no: u64, e: std::io::Error| io_error(path, line_no, e);
        let (mut a, mut b) = (Block::default(), Block::default());
        reader.fill(&mut a, &[]).map_err(|e| io_error(reader.line_no, e))?;
        // (a byte search first: a file of Binaries may hold other resources, and its images and PDFs
        // are long lines)
        let binary = memchr::memmem::Finder::new(b"\"Binary\"");
        loop {
            for (no, range) in &a.lines {
                let line = &a.buf[range.clone()];
                if binary.find(line).is_none() {
                    continue;
                }
                let Ok(bin) = super::from_line::<super::BinaryResource>(line) else { continue };
                let (Some("Binary"), Some(id)) = (bin.resource_type.as_deref(), bin.id.as_deref()) else { continue };
                let Some((&key, named)) = wanted.get_key_value(id.trim()) else { continue };
                if !read.insert(key) {
                    sink.report.count(Severity::Warning, "duplicate_binary", "Binary", "id");
                    continue;
                }
                for &(i, j) in named {
                    got[i][j] = Some(link_text(&notes[i].links[j].1, bin.content_type.as_deref(), bin.data.as_deref()));
                    left[i] -= 1;
                    if left[i] == 0 {
                        done[i] = true;
                        emit_url_note(sink, &name, *no, &notes[i], got[i].drain(..).flatten());
                    }
                }
            }
            if reader.eof {
                break;
            }
            reader.fill(&mut b, a.tail()).map_err(|e| io_error(reader.line_no, e))?;
            std::mem::swap(&mut a, &mut b);
        }
    }
    // notes some of whose Binaries are not in the export: read from those that are; those with none,
    // said
    for (i, n) in notes.iter().enumerate() {
        if done[i] {
            continue;
        }
        if got[i].iter().any(Option::is_some) {
            emit_url_note(sink, "Binary", 0, n, got[i].drain(..).flatten());
        } else {
            sink.report.count(Severity::Warning, "note_by_url", n.resource, n.fields().0);
            match &n.also {
                // (a report's conclusion is its note still)
                Some(_) => emit_url_note(sink, "Binary", 0, n, std::iter::empty()),
                None => {
                    // (a version whose text is not in the export still replaces the ones before it)
                    if let Some(v) = n.version {
                        let at = sink.data.events.len();
                        sink.data.versions.read(n.resource, v, at..at);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Notes kept before their subject's Patient resource was read, checked against its identifiers.
fn check_early_notes(sink: &mut Sink) {
    let arrivals = std::mem::take(&mut sink.data.subject_identifiers.arrivals);
    let before: std::collections::HashMap<u32, (usize, String)> = arrivals
        .into_iter()
        .filter(|(_, at)| *at > 0)
        .filter_map(|(s, at)| sink.data.subjects.get(&s).map(|i| (i, (at, s))))
        .collect();
    if before.is_empty() {
        return;
    }
    for i in 0..sink.data.events.len() {
        let e = sink.data.events[i];
        if e.kind != data::EventKind::Note || e.text == data::NONE {
            continue;
        }
        let Some((at, subject)) = before.get(&e.subject) else { continue };
        if i >= *at {
            continue;
        }
        let text = &sink.data.texts[e.text as usize];
        let found = guard::merge(sink.data.subject_identifiers.find(subject, text, &mut 0));
        if !found.is_empty() {
            for (kind, _) in &found {
                sink.report.identifier(sink.opts.identifiers, *kind, "note", "subject_identifier");
            }
            let redacted = guard::redact(text, &found);
            sink.data.texts[e.text as usize] = redacted;
        }
    }
}

/// Reads a FHIR bulk export: a directory of `*.ndjson`/`*.ndjson.gz` (subdirectories too, in path order)
/// or one file.
pub fn read(path: &Path, opts: &ReadOptions, data: &mut data::Dataset, report: &mut data::Report) -> Result<()> {
    // a bulk export's NDJSON files, with any JSON documents beside them (a Bundle of notes, a
    // `manifest.json`: said, not read); else, a directory of JSON documents (Synthea's Bundles)
    let ndjson = !path.is_dir() || data::list_dir(path)?.iter().any(|p| data::has_ext(p, data::FHIR_EXTS));
    let exts: Vec<&str> = data::FHIR_EXTS.iter().chain(data::FHIR_JSON_EXTS).copied().collect();
    let files = data::input_files(path, if ndjson { &exts } else { data::FHIR_JSON_EXTS }, report)?;
    // Patient files first, for their identifiers only, so that notes are checked as they are read;
    // and RelatedPerson and Person files, whose values are their patients' identifiers
    let mut first = data::Dataset::default();
    let mut scratch = data::Report::default();
    let mut pre = Sink { data: &mut first, report: &mut scratch, opts };
    let identifying = |f: &&std::path::PathBuf| {
        f.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("Patient") || n.starts_with("RelatedPerson") || n.starts_with("Person")
        })
    };
    let documents: HashMap<&Path, usize> = files
        .iter()
        .filter(|f| data::has_ext(f, data::FHIR_JSON_EXTS))
        .enumerate()
        .map(|(i, f)| (f.as_path(), i + 1))
        .collect();
    for f in files.iter().filter(identifying) {
        read_any(f, &documents, &mut pre)?;
    }
    // records linked as one person (Patient.link, a Person's links): each one's notes are checked
    // against the identifiers of all of them
    link_same_person(&mut first);
    if first.merge_linked_subjects() > 0 {
        share_linked(&mut first);
    }
    data.subject_identifiers = std::mem::take(&mut first.subject_identifiers);
    data.subject_identifiers.arrivals.clear();
    data.subject_identifiers.related.clear();
    data.subject_identifiers.same_person.clear();
    drop(first);
    let mut sink = Sink { data, report, opts };
    // the NDJSON files that hold Binaries, read again for the notes whose text is in one
    let mut binary_files = Vec::new();
    if ndjson {
        for f in &files {
            let before = sink.data.binaries;
            read_any(f, &documents, &mut sink)?;
            if sink.data.binaries > before && !data::has_ext(f, data::FHIR_JSON_EXTS) {
                binary_files.push(f.as_path());
            }
        }
    } else {
        read_documents(&files, &mut sink)?;
    }
    read_url_notes(&mut sink, &binary_files)?;
    check_early_notes(&mut sink);
    link_same_person(sink.data);
    let merged = sink.data.merge_linked_subjects();
    if merged > 0 {
        sink.report.finding(Severity::Info, "linked_patient", "Patient", "link", None, merged as u64);
        // links read only now (in a file not named `Patient*`, `Person*`): the group's identifiers
        // are shared, and its notes checked again, as those of a Patient read after its notes are
        let at = sink.data.events.len();
        for (first, members) in share_linked(sink.data) {
            let store = &mut sink.data.subject_identifiers;
            if members.iter().any(|m| store.noted_before.contains(&guard::subject::subject_key(m))) {
                store.recheck = true;
            }
            store.arrivals.push((first, at));
        }
        check_early_notes(&mut sink);
    }
    // an export with Patient resources whose events name subjects it has none for (a reference to
    // another export, a mistyped id): counted
    if !sink.data.patients.is_empty() {
        // per subject after the merge: one whose linked ids (a Bundle Patient's id and its
        // `urn:uuid:`, `Patient.link`) include a Patient's has one
        let d = &sink.data;
        let root = |s: u32| d.merged_into.get(&s).copied().unwrap_or(s);
        let with: std::collections::HashSet<u32> = d.patients.iter().map(|&p| root(p)).collect();
        let without =
            (0..d.subjects.len() as u32).filter(|s| !d.merged_into.contains_key(s) && !with.contains(s)).count();
        if without > 0 {
            sink.report.finding(Severity::Info, "subject_without_patient", "Patient", "id", None, without as u64);
        }
    }
    // RelatedPerson resources whose patient is no subject of the export (no Patient resource, no
    // event): counted, as subjects without a Patient are; their values are no one's notes to search
    // (a Person's links to unknown patients likewise, link by link; a `urn:uuid:` link to a
    // Practitioner, RelatedPerson or Person of the export is no link to a patient)
    let related = std::mem::take(&mut sink.data.subject_identifiers.related);
    let store = &sink.data.subject_identifiers;
    let not_a_patient = |resource: &str, id: &str| {
        let key = guard::subject::subject_key(id);
        resource == "Person" && store.uuid_linked.contains(&key) && store.not_patients.contains(&key)
    };
    for (resource, kind, field) in [
        ("RelatedPerson", "related_person_without_patient", "patient"),
        ("Person", "person_link_without_patient", "link.target"),
    ] {
        let unknown: u64 = related
            .iter()
            .filter(|((r, id), _)| *r == resource && sink.data.subjects.get(id).is_none() && !not_a_patient(r, id))
            .map(|(_, n)| n)
            .sum();
        if unknown > 0 {
            sink.report.finding(Severity::Info, kind, resource, field, None, unknown);
        }
    }
    if sink.data.subject_identifiers.recheck {
        // a Patient came after notes of its subject that are not kept (events not kept, `data check`;
        // or free text never kept, `Observation.note`): a second pass with every subject's identifiers
        // known from the start finds what the first could not (it keeps no events either)
        let mut again = data::Dataset::default();
        // (it reads for identifiers only: the versions were told apart by the first)
        again.versions.off = true;
        again.subject_identifiers = std::mem::take(&mut sink.data.subject_identifiers);
        again.subject_identifiers.noted_before.clear();
        let mut second = data::Report::default();
        let check = ReadOptions { keep_events: false, ..opts.clone() };
        let mut pass = Sink { data: &mut again, report: &mut second, opts: &check };
        for f in &files {
            read_any(f, &documents, &mut pass)?;
        }
        read_url_notes(&mut pass, &binary_files)?;
        for (resource, field) in OWN_IDENTIFIER_FINDINGS {
            sink.report.replace_findings_of(resource, field, &second);
        }
        sink.data.subject_identifiers = std::mem::take(&mut again.subject_identifiers);
    }
    // the versions of a resource before its latest: their events dropped, and said
    let dropped = sink.data.versions.drop_replaced(&mut sink.data.events);
    for (resource, n) in dropped.replaced {
        let detail = "the same resource type, id and patient read again: only its latest version is read \
                      (meta.lastUpdated, then meta.versionId, else the one read last); the counts above are of \
                      every version read";
        sink.report.finding(Severity::Warning, "resource_version", resource, "id", Some(detail), n);
    }
    for (resource, n) in dropped.ambiguous {
        let detail = "a Bundle's DELETE names a type and id that resources of more than one patient have (two \
                      sources numbering alike): none of them is deleted";
        sink.report.finding(Severity::Warning, "delete_not_applied", resource, "id", Some(detail), n);
    }
    for (resource, n) in dropped.deleted {
        let detail = "a Bundle's DELETE entry names the resource (a history, a bulk export's deleted resources): \
                      it is not read (a version after response.lastModified is); the counts above include it";
        sink.report.finding(Severity::Warning, "resource_deleted", resource, "id", Some(detail), n);
    }
    sink.data.subject_identifiers.noted_before = Default::default();
    sink.data.subject_identifiers.related = Default::default();
    sink.data.subject_identifiers.same_person = Default::default();
    sink.data.subject_identifiers.uuid_linked = Default::default();
    sink.data.report_notes = Default::default();
    sink.data.subject_identifiers.not_patients = Default::default();
    Ok(())
}

/// Gives every record of each group merged as one person ([`data::Dataset::merge_linked_subjects`],
/// a chain of links included) the identifiers of all of them: a note filed under one record may name
/// the person as another record knows them. Returns the groups where a record gained some: the
/// group's first subject (whose index its events carry after the merge) and its members.
fn share_linked(data: &mut data::Dataset) -> Vec<(String, Vec<String>)> {
    // from the merged subjects only (most subjects are no group), each group in subject order so that
    // the identifiers shared are in the same order whatever the hash map's
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&s, &first) in &data.merged_into {
        groups.entry(first).or_insert_with(|| vec![first]).push(s);
    }
    let mut groups: Vec<(u32, Vec<u32>)> = groups.into_iter().collect();
    groups.sort_unstable();
    let mut gained = Vec::new();
    for (first, mut group) in groups {
        group.sort_unstable();
        let names: Vec<&str> = group.iter().map(|&s| data.subjects.names[s as usize].as_str()).collect();
        if data.subject_identifiers.share(&names) {
            let members = names.iter().map(|m| (*m).to_owned()).collect();
            gained.push((data.subjects.names[first as usize].clone(), members));
        }
    }
    gained
}

/// The Patients a Person links (one human's records) as links of the dataset, merged into one
/// privacy unit as `Patient.link`'s are; only those that are subjects of the input (a link to a
/// patient the export lacks makes no subject).
fn link_same_person(data: &mut data::Dataset) {
    for group in std::mem::take(&mut data.subject_identifiers.same_person) {
        let subjects: Vec<u32> = group.iter().filter_map(|p| data.subjects.get(p)).collect();
        if let Some((&first, rest)) = subjects.split_first() {
            data.links.extend(rest.iter().map(|&s| (first, s)));
        }
    }
}
