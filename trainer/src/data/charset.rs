//! Text encodings of files written by other systems: CSV exports of Japanese hospital systems are
//! mostly Shift_JIS (Windows code page 932), some EUC-JP; Excel writes UTF-8 with a byte-order mark, or
//! UTF-16 for "Unicode text"; European systems write windows-1252. Readers see UTF-8 only: [`open`]
//! decodes a file as it streams, in the encoding the config names or the one its start shows.

use encoding_rs::{Encoding, EUC_JP, ISO_2022_JP, SHIFT_JIS, UTF_16BE, UTF_16LE, UTF_8};
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// The encoding a label names: the WHATWG labels (`utf-8`, `shift_jis`, `euc-jp`, `windows-1252`,
/// ...) and the names Windows and Python give the Japanese ones (`cp932`, `ms932`, `euc_jp`, `ujis`),
/// in any case.
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    // the labels of the "replacement" encoding (iso-2022-kr, hz-gb-2312) decode every file to one U+FFFD
    let found = |e: Option<&'static Encoding>| e.filter(|&e| e != encoding_rs::REPLACEMENT);
    if let Some(e) = found(Encoding::for_label(label.trim().as_bytes())) {
        return Some(e);
    }
    let label = label.trim().to_ascii_lowercase().replace('_', "-");
    let label = match label.as_str() {
        "cp932" | "ms932" | "ms-932" | "x-ms-cp932" | "windows-932" | "windows-31j" | "sjis" => "shift_jis",
        "eucjp" | "euc-jp" | "ujis" => "euc-jp",
        "iso2022-jp" | "iso-2022-jp" => "iso-2022-jp",
        "utf8" | "utf-8-sig" => "utf-8",
        "latin-1" | "latin1" => "windows-1252",
        l => l,
    };
    found(Encoding::for_label(label.as_bytes()))
}

/// How a file's encoding is chosen: named (`read.encoding`), or seen from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    #[default]
    Auto,
    Named(&'static Encoding),
}

impl Choice {
    /// `auto` or an encoding label; the error says what is accepted.
    pub fn parse(s: &str) -> std::result::Result<Choice, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Choice::Auto);
        }
        encoding_for_label(s).map(Choice::Named).ok_or_else(|| {
            "is not an encoding: \"auto\" (the default: UTF-8, or Shift_JIS / EUC-JP / UTF-16 as the file's \
             start shows), or a name such as \"utf-8\", \"shift_jis\" (cp932), \"euc-jp\", \"windows-1252\""
                .to_owned()
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Choice::Auto => "auto",
            Choice::Named(e) => e.name(),
        }
    }
}

/// How much of a file's start is looked at to tell its encoding.
const SNIFF_BYTES: usize = 64 << 10;

/// How far a file that starts in plain ASCII is read to find the text that tells its encoding.
const LOOKAHEAD_BYTES: usize = 16 << 20;

/// How a file's encoding was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// named by the config, or by the file's byte-order mark
    Said,
    /// UTF-8 (its start is, or is all but a few stray bytes)
    Utf8,
    /// told from the start's bytes: a guess the report says as a warning
    Guessed,
}

/// Invalid UTF-8 sequences in a start that is still read as UTF-8 (stray bytes: their lines are
/// malformed, naming read.encoding); more, and the start is another encoding's or none.
const STRAY_BYTES: usize = 8;

/// The encoding `choice` gives a file that starts with `head` (at most [`SNIFF_BYTES`]; `complete`:
/// it is the whole file), the length of the byte-order mark to skip, and how it was chosen.
///
/// Auto: a byte-order mark says it (UTF-8, UTF-16); else UTF-16 without a mark when every other byte of
/// the start is zero (valid UTF-8 otherwise), ISO-2022-JP when it holds its escapes; else UTF-8 when the
/// start is UTF-8 (a character cut at the end of an incomplete start allowed); else Shift_JIS or EUC-JP when one
/// decodes the start without error into Japanese text ([`reads_as_japanese`]) — both: the one giving
/// fewer half-width katakana, which EUC-JP bytes read as Shift_JIS become, Shift_JIS on a tie; else
/// UTF-8 when at most [`STRAY_BYTES`] sequences are not; else `None` (the caller says the file is not
/// text in an encoding it can tell, and to name it).
pub fn detect(choice: Choice, head: &[u8], complete: bool) -> Option<(&'static Encoding, usize, Chosen)> {
    let (bom, len) = match Encoding::for_bom(head) {
        Some((e, n)) => (Some(e), n),
        None => (None, 0),
    };
    if let Choice::Named(e) = choice {
        // a mark of the named encoding is skipped (either UTF-16's for "utf-16"); another's is data read
        // as the config says
        let utf16 = |x: &'static Encoding| x == UTF_16LE || x == UTF_16BE;
        return match bom {
            Some(b) if b == e || (utf16(b) && utf16(e)) => Some((b, len, Chosen::Said)),
            _ => Some((e, 0, Chosen::Said)),
        };
    }
    if let Some(e) = bom {
        return Some((e, len, Chosen::Said));
    }
    if let Some(e) = utf16_without_mark(head) {
        return Some((e, 0, Chosen::Guessed));
    }
    // ISO-2022-JP is 7-bit, so valid UTF-8: its escape into JIS X 0208 tells it
    let escapes = memchr::memmem::find(head, b"\x1b$B").is_some() || memchr::memmem::find(head, b"\x1b$@").is_some();
    if escapes && !ISO_2022_JP.decode_without_bom_handling(head).1 {
        return Some((ISO_2022_JP, 0, Chosen::Guessed));
    }
    let invalid = invalid_utf8(head, complete);
    if invalid == 0 {
        return Some((UTF_8, 0, Chosen::Utf8));
    }
    let japanese = |enc: &'static Encoding| -> Option<usize> {
        let mut decoder = enc.new_decoder_without_bom_handling();
        let mut out = String::with_capacity(decoder.max_utf8_buffer_length_without_replacement(head.len())?);
        let (result, _) = decoder.decode_to_string_without_replacement(head, &mut out, complete);
        match result {
            encoding_rs::DecoderResult::Malformed(..) => None,
            _ if !reads_as_japanese(&out) => None,
            _ => Some(out.chars().filter(|c| ('\u{FF61}'..='\u{FF9F}').contains(c)).count()),
        }
    };
    match (japanese(SHIFT_JIS), japanese(EUC_JP)) {
        (Some(s), Some(e)) => return Some((if e < s { EUC_JP } else { SHIFT_JIS }, 0, Chosen::Guessed)),
        (Some(_), None) => return Some((SHIFT_JIS, 0, Chosen::Guessed)),
        (None, Some(_)) => return Some((EUC_JP, 0, Chosen::Guessed)),
        (None, None) => {}
    }
    (invalid <= STRAY_BYTES).then_some((UTF_8, 0, Chosen::Utf8))
}

/// UTF-16 without a byte-order mark: ASCII text has a zero in every other byte (at least 9 in 10 of one
/// parity's bytes, fewer than 1 in 10 of the other's). Such text is valid UTF-8 with a NUL beside each
/// character.
pub fn utf16_without_mark(bytes: &[u8]) -> Option<&'static Encoding> {
    if bytes.len() < 4 {
        return None;
    }
    let zeros = |parity: usize| bytes.iter().skip(parity).step_by(2).filter(|&&b| b == 0).count();
    let half = bytes.len() / 2;
    match (zeros(0), zeros(1)) {
        (even, odd) if odd * 10 >= half * 9 && even * 10 < half => Some(UTF_16LE),
        (even, odd) if even * 10 >= half * 9 && odd * 10 < half => Some(UTF_16BE),
        _ => None,
    }
}

/// The invalid UTF-8 sequences of `head` (a character cut at its end not counted unless it is the whole
/// file).
fn invalid_utf8(head: &[u8], complete: bool) -> usize {
    let mut rest = head;
    let mut n = 0;
    while let Err(e) = std::str::from_utf8(rest) {
        match e.error_len() {
            Some(len) => {
                n += 1;
                rest = &rest[e.valid_up_to() + len..];
            }
            None => {
                n += complete as usize;
                break;
            }
        }
    }
    n
}

/// Whether decoded text reads as Japanese: kana, kanji, Japanese punctuation and runs of half-width
/// katakana (old systems write names so) that stand apart from Latin letters outnumber the non-ASCII
/// characters touching one (windows-1252 text read as Shift_JIS becomes `Cr饌tinine`, `ｵmol/L`).
fn reads_as_japanese(text: &str) -> bool {
    let half = |c: char| ('\u{FF61}'..='\u{FF9F}').contains(&c);
    let japanese = |c: char| {
        ('\u{3041}'..='\u{30FF}').contains(&c)
            || ('\u{4E00}'..='\u{9FFF}').contains(&c)
            || matches!(c, '、' | '。' | '「' | '」' | '・')
            // full-width digits, letters and signs (`１．２`, `ｍｇ／ｄＬ`), as Japanese systems write them
            || ('\u{FF01}'..='\u{FF5E}').contains(&c)
    };
    let (mut yes, mut no) = (0usize, 0usize);
    let mut prev = [' ', ' '];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        if !c.is_ascii() {
            if prev[1].is_ascii_alphabetic() || next.is_ascii_alphabetic() {
                no += 1;
            } else if japanese(c) || (half(c) && half(prev[1]) && !half(prev[0])) {
                // a run of half-width katakana counted once
                yes += 1;
            }
        }
        prev = [prev[1], c];
    }
    yes > no
}

/// Bytes a decoder could not map, counted as they stream (each became U+FFFD).
#[derive(Clone, Default)]
pub struct Replaced(Rc<Cell<u64>>);

impl Replaced {
    pub fn count(&self) -> u64 {
        self.0.get()
    }
}

/// A file opened as UTF-8 text: the reader, the encoding it was read in, and the count of undecodable
/// sequences (only for a decoded encoding; invalid UTF-8 in a UTF-8 file is left to the reader, which
/// knows its lines).
pub struct Opened {
    pub reader: Box<dyn Read>,
    pub encoding: &'static Encoding,
    pub chosen: Chosen,
    pub replaced: Replaced,
}

/// Why a file's encoding could not be told.
pub const UNKNOWN_ENCODING: &str =
    "is not UTF-8, Shift_JIS, EUC-JP or UTF-16 text; name its encoding with read.encoding \
     (for example \"windows-1252\")";

/// Why a file is not text at all: a spreadsheet workbook given as CSV.
pub const SPREADSHEET: &str = "is a spreadsheet workbook (.xlsx, .ods or .xls), not text: save it as CSV (UTF-8) \
     from the spreadsheet and give that file";

/// Opens `inner` (a file) as UTF-8 text in the encoding `choice` gives it. `Err` holds
/// [`UNKNOWN_ENCODING`] when auto cannot tell, or the read error.
pub fn open<R: Read + 'static>(
    mut inner: R,
    choice: Choice,
) -> std::io::Result<std::result::Result<Opened, &'static str>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut inner).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
    let mut complete = head.len() < SNIFF_BYTES;
    // a start of plain ASCII (no zero byte: not UTF-16) tells nothing, UTF-8, Shift_JIS and EUC-JP all
    // read it (an export's first thousands of rows may be codes and numbers): the file is read on to
    // its first byte that is not ASCII (up to LOOKAHEAD_BYTES, kept in memory and read again) and told
    // from the line that holds it
    let mut window = 0..head.len();
    if matches!(choice, Choice::Auto) && !complete && head.iter().all(|&b| b != 0 && b.is_ascii()) {
        loop {
            let before = head.len();
            (&mut inner).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
            complete = head.len() - before < SNIFF_BYTES;
            if let Some(i) = head[before..].iter().position(|b| !b.is_ascii()) {
                // the window: from the line that holds it (`\n` or an old Mac's `\r` ends a line), at
                // most half a window before it, to a whole window after that start (read on to have it)
                let first = before + i;
                let line = head[..first].iter().rposition(|&b| b == b'\n' || b == b'\r').map_or(0, |n| n + 1);
                let start = line.max(first.saturating_sub(SNIFF_BYTES / 2));
                while !complete && head.len() < start + SNIFF_BYTES {
                    let more = head.len();
                    (&mut inner).take((start + SNIFF_BYTES - more) as u64).read_to_end(&mut head)?;
                    complete = head.len() < start + SNIFF_BYTES;
                }
                window = start..head.len().min(start + SNIFF_BYTES);
                break;
            }
            if complete || head.len() >= LOOKAHEAD_BYTES {
                break;
            }
        }
    }
    let told_from_start = window.start == 0;
    let window_complete = complete && window.end == head.len();
    // a spreadsheet saved as a workbook (.xlsx and .ods are zip files) or an old .xls: no encoding
    // makes it text
    if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Ok(Err(SPREADSHEET));
    }
    let Some((encoding, bom, chosen)) = detect(choice, &head[window], window_complete) else {
        return Ok(Err(UNKNOWN_ENCODING));
    };
    // (a mark is one only at the file's start)
    if told_from_start {
        head.drain(..bom);
    }
    let replaced = Replaced::default();
    let source = std::io::Cursor::new(head).chain(inner);
    let reader: Box<dyn Read> = if encoding == UTF_8 {
        Box::new(source)
    } else {
        Box::new(Decode {
            inner: source,
            decoder: encoding.new_decoder_without_bom_handling(),
            input: vec![0; 64 << 10],
            start: 0,
            end: 0,
            eof: false,
            output: vec![0; 3 * (64 << 10) + 16],
            out_start: 0,
            out_end: 0,
            done: false,
            owed: false,
            replaced: replaced.clone(),
        })
    };
    Ok(Ok(Opened { reader, encoding, chosen, replaced }))
}

/// A reader giving `inner`'s bytes decoded to UTF-8.
struct Decode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
    done: bool,
    /// a U+FFFD to write before the next decoded text
    owed: bool,
    replaced: Replaced,
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out_start == self.out_end {
            // a replacement owed from the last round first (it found the malformed sequence with the
            // output perhaps full)
            let mut written = 0;
            if self.owed {
                self.output[..3].copy_from_slice("\u{FFFD}".as_bytes());
                (written, self.owed) = (3, false);
            }
            if !self.done {
                if self.start == self.end && !self.eof {
                    let n = self.inner.read(&mut self.input)?;
                    (self.start, self.end, self.eof) = (0, n, n == 0);
                }
                let (result, read, n) = self.decoder.decode_to_utf8_without_replacement(
                    &self.input[self.start..self.end],
                    &mut self.output[written..],
                    self.eof,
                );
                self.start += read;
                written += n;
                match result {
                    encoding_rs::DecoderResult::Malformed(..) => {
                        self.owed = true;
                        self.replaced.0.set(self.replaced.0.get() + 1);
                    }
                    // the last input decoded and flushed: the decoder is not called again
                    encoding_rs::DecoderResult::InputEmpty if self.eof => self.done = true,
                    _ => {}
                }
            } else if written == 0 {
                return Ok(0);
            }
            (self.out_start, self.out_end) = (0, written);
        }
        let n = buf.len().min(self.out_end - self.out_start);
        buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}
