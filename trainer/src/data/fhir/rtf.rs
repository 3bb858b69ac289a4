//! Plain text of an RTF document: a note in `text/rtf` (as EHRs send clinical notes, often beside or
//! instead of HTML). One linear pass over the bytes, no recursion, never panics.
//!
//! Read: the text of the document's body in the encoding RTF gives it: `\ansicpg` (the document's
//! code page: 932 is Shift_JIS), a font's `\fcharset` or `\cpg` (Word writes Japanese in a font of
//! charset 128 as `\'82\'a0` byte pairs), `\uN` Unicode characters with their `\ucN` fallbacks
//! skipped; `\par`, `\line`, `\row`, `\page` as line breaks, `\tab` and `\cell` as spaces between
//! values. Not read: destinations that are not the note's text (the font, colour and style tables,
//! `\info` (author, title), pictures and objects, headers and footers, field instructions, every
//! `{\*...}` group), hidden text (`\v`), the ANSI copy of text `\upr` also gives in Unicode (its
//! `\ud`), and `\bin` data.

use encoding_rs::Encoding;
use std::collections::HashMap;

/// What a group's text is.
#[derive(Clone, Copy, PartialEq)]
enum Dest {
    /// the document's text
    Text,
    /// the font table: its fonts' charsets are read, their names are not text
    Fonts,
    /// not text (a table, a picture, metadata, an ignorable `{\*...}` group)
    Skip,
}

#[derive(Clone, Copy)]
struct Group {
    dest: Dest,
    /// `\ucN`: the characters that stand for a `\uN` in a reader that does not know it
    uc: u32,
    /// the current font (`\fN`), whose charset gives the encoding of `\'hh` bytes
    font: Option<i32>,
    /// inside `\upr` (text written twice, in ANSI and in Unicode): the destination its `\ud` group,
    /// the Unicode one, is read in; the ANSI one is not read
    upr: Option<Dest>,
    /// hidden text (`\v`): not shown, not read
    hidden: bool,
}

struct Reader {
    out: String,
    /// bytes of text not yet decoded, in `pending_enc`
    pending: Vec<u8>,
    pending_enc: &'static Encoding,
    /// `\ansicpg`: the encoding of text in a font without a charset of its own
    doc_enc: &'static Encoding,
    /// fonts of the font table with a charset or code page of their own
    fonts: HashMap<i32, &'static Encoding>,
    /// the font being defined in the font table
    defining: Option<i32>,
    stack: Vec<Group>,
    group: Group,
    /// characters still to skip after a `\uN` (its fallback)
    skip: u32,
    /// a `\uN` high surrogate waiting for its low half
    high: Option<u32>,
}

/// The text of an RTF document; an error when the bytes are not RTF (no `{\rtf` at the start).
pub fn rtf_to_text(bytes: &[u8]) -> Result<String, &'static str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if !bytes.starts_with(b"{\\rtf") {
        return Err("attachment is not RTF");
    }
    let win1252 = encoding_rs::WINDOWS_1252;
    let mut r = Reader {
        out: String::with_capacity(bytes.len() / 2),
        pending: Vec::new(),
        pending_enc: win1252,
        doc_enc: win1252,
        fonts: HashMap::new(),
        defining: None,
        stack: Vec::new(),
        group: Group { dest: Dest::Text, uc: 1, font: None, upr: None, hidden: false },
        skip: 0,
        high: None,
    };
    r.run(bytes);
    r.flush();
    Ok(tidy(&r.out))
}

/// The encoding of a Windows code page (`\ansicpg`, `\cpg`); `None` for one not known.
fn code_page(cp: i32) -> Option<&'static Encoding> {
    Some(match cp {
        932 | 10001 => encoding_rs::SHIFT_JIS,
        936 => encoding_rs::GBK,
        949 => encoding_rs::EUC_KR,
        950 => encoding_rs::BIG5,
        874 => encoding_rs::WINDOWS_874,
        1250 => encoding_rs::WINDOWS_1250,
        1251 => encoding_rs::WINDOWS_1251,
        1252 => encoding_rs::WINDOWS_1252,
        1253 => encoding_rs::WINDOWS_1253,
        1254 => encoding_rs::WINDOWS_1254,
        1255 => encoding_rs::WINDOWS_1255,
        1256 => encoding_rs::WINDOWS_1256,
        1257 => encoding_rs::WINDOWS_1257,
        1258 => encoding_rs::WINDOWS_1258,
        10000 => encoding_rs::MACINTOSH,
        65001 => encoding_rs::UTF_8,
        _ => return None,
    })
}

/// The encoding of a font's `\fcharsetN`; `None` for ANSI and the default (the document's code page)
/// and charsets not known.
fn charset(n: i32) -> Option<&'static Encoding> {
    code_page(match n {
        128 => 932,
        129 => 949,
        134 => 936,
        136 => 950,
        161 => 1253,
        162 => 1254,
        163 => 1258,
        177 => 1255,
        178 => 1256,
        186 => 1257,
        204 => 1251,
        222 => 874,
        238 => 1250,
        77 => 10000,
        _ => return None,
    })
}

/// Destinations whose text is not the note's.
fn skipped(word: &[u8]) -> bool {
    matches!(
        word,
        b"colortbl"
            | b"stylesheet"
            | b"info"
            | b"pict"
            | b"object"
            | b"objdata"
            | b"nonshppict"
            | b"shpinst"
            | b"header"
            | b"headerl"
            | b"headerr"
            | b"headerf"
            | b"footer"
            | b"footerl"
            | b"footerr"
            | b"footerf"
            | b"fldinst"
            | b"listtable"
            | b"listoverridetable"
            | b"rsidtbl"
            | b"revtbl"
            | b"filetbl"
            | b"themedata"
            | b"colorschememapping"
            | b"latentstyles"
            | b"datastore"
            | b"xmlnstbl"
            | b"generator"
            | b"pgdsctbl"
            | b"bkmkstart"
            | b"bkmkend"
            | b"template"
            | b"userprops"
            | b"docvar"
            | b"author"
            | b"operator"
            | b"title"
            | b"subject"
            | b"keywords"
            | b"comment"
            | b"company"
    )
}

impl Reader {
    fn run(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'{' => {
                    self.skip = 0;
                    self.stack.push(self.group);
                    i += 1;
                }
                b'}' => {
                    self.skip = 0;
                    match self.stack.pop() {
                        Some(g) => self.group = g,
                        // the document's group closed: what follows is not the document
                        None => return,
                    }
                    if self.stack.is_empty() {
                        return;
                    }
                    i += 1;
                }
                b'\\' => i = self.control(b, i + 1),
                // line breaks in the file are not text
                b'\r' | b'\n' => i += 1,
                c => {
                    if self.skip > 0 {
                        self.skip -= 1;
                    } else {
                        self.byte(c);
                    }
                    i += 1;
                }
            }
        }
    }

    /// A control word or symbol after the `\` at `at - 1`; returns where reading goes on.
    fn control(&mut self, b: &[u8], at: usize) -> usize {
        let Some(&c) = b.get(at) else { return at };
        if !c.is_ascii_alphabetic() {
            return self.symbol(b, at);
        }
        let mut end = at;
        while end < b.len() && end - at < 32 && b[end].is_ascii_alphabetic() {
            end += 1;
        }
        let word = &b[at..end];
        // an optional signed number (at most 10 digits are kept), then an optional space that
        // belongs to the word
        let mut j = end;
        let negative = b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit);
        if negative {
            j += 1;
        }
        let digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let param = (j > digits).then(|| {
            let n = b[digits..j.min(digits + 10)].iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
            let n = if negative { -n } else { n };
            n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        });
        if b.get(j) == Some(&b' ') {
            j += 1;
        }
        if word == b"bin" {
            // binary data of `param` bytes: not text
            let n = param.unwrap_or(0).max(0) as usize;
            return j.saturating_add(n).min(b.len());
        }
        self.word(word, param);
        j
    }

    /// A control symbol (`\\`, `\{`, `\'hh`, `\*`, ...) at `at`; returns where reading goes on.
    fn symbol(&mut self, b: &[u8], at: usize) -> usize {
        let c = b[at];
        if c == b'\'' {
            let hex = |k: usize| b.get(k).and_then(|&h| (h as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(at + 1), hex(at + 2)) else { return at + 1 };
            if self.skip > 0 {
                self.skip -= 1;
            } else {
                self.byte((hi * 16 + lo) as u8);
            }
            return at + 3;
        }
        if self.skip > 0 && c != b'*' {
            self.skip -= 1;
            return at + 1;
        }
        match c {
            b'\\' | b'{' | b'}' => self.byte(c),
            b'~' => self.push(' '),
            b'_' => self.push('-'),
            // a line break escaped: a paragraph
            b'\r' | b'\n' => self.push('\n'),
            // an ignorable destination: not the note's text
            b'*' => self.group.dest = Dest::Skip,
            // `\-` (optional hyphen), `\:` (index entry) and the rest: nothing to read
            _ => {}
        }
        at + 1
    }

    fn word(&mut self, word: &[u8], param: Option<i32>) {
        if self.group.dest == Dest::Fonts {
            match word {
                b"f" => self.defining = param,
                b"fcharset" | b"cpg" => {
                    let enc = param.and_then(if word == b"cpg" { code_page } else { charset });
                    if let (Some(f), Some(enc)) = (self.defining, enc) {
                        self.fonts.insert(f, enc);
                    }
                }
                _ if skipped(word) => self.group.dest = Dest::Skip,
                _ => {}
            }
            return;
        }
        match word {
            b"fonttbl" => self.group.dest = Dest::Fonts,
            b"upr" => {
                self.group.upr = Some(self.group.dest);
                self.group.dest = Dest::Skip;
            }
            // (after the `\*` that made its group ignorable)
            b"ud" => {
                if let Some(dest) = self.group.upr.take() {
                    self.group.dest = dest;
                }
            }
            b"v" => self.group.hidden = param != Some(0),
            _ if skipped(word) => self.group.dest = Dest::Skip,
            b"ansicpg" => {
                if let Some(enc) = param.and_then(code_page) {
                    self.doc_enc = enc;
                }
            }
            b"f" | b"deff" => self.group.font = param,
            b"uc" => self.group.uc = param.unwrap_or(1).clamp(0, 16) as u32,
            b"u" => {
                let n = param.unwrap_or(0);
                let n = if n < 0 { n + 65536 } else { n } as u32;
                self.unicode(n);
                self.skip = self.group.uc;
            }
            b"par" | b"line" | b"sect" | b"page" | b"row" => self.push('\n'),
            b"tab" | b"cell" => self.push('\t'),
            b"emdash" => self.push('\u{2014}'),
            b"endash" => self.push('\u{2013}'),
            b"bullet" => self.push('\u{2022}'),
            b"lquote" => self.push('\u{2018}'),
            b"rquote" => self.push('\u{2019}'),
            b"ldblquote" => self.push('\u{201C}'),
            b"rdblquote" => self.push('\u{201D}'),
            b"emspace" | b"enspace" | b"qmspace" => self.push(' '),
            _ => {}
        }
    }

    /// A `\uN` character; a surrogate pair's halves (Word writes characters past U+FFFF so) joined.
    fn unicode(&mut self, n: u32) {
        match n {
            0xD800..=0xDBFF => self.high = Some(n),
            0xDC00..=0xDFFF => {
                if let Some(h) = self.high.take() {
                    if let Some(c) = char::from_u32(0x10000 + ((h - 0xD800) << 10) + (n - 0xDC00)) {
                        self.push(c);
                    }
                }
            }
            _ => {
                if let Some(c) = char::from_u32(n) {
                    self.push(c);
                }
            }
        }
    }

    /// A byte of text in the current font's encoding.
    fn byte(&mut self, c: u8) {
        if self.group.dest != Dest::Text || self.group.hidden {
            return;
        }
        let enc = self.group.font.and_then(|f| self.fonts.get(&f).copied()).unwrap_or(self.doc_enc);
        if enc != self.pending_enc {
            self.flush();
            self.pending_enc = enc;
        }
        self.pending.push(c);
    }

    /// A character of text.
    fn push(&mut self, c: char) {
        if self.group.dest != Dest::Text || self.group.hidden {
            return;
        }
        self.flush();
        // control characters (a `\u0`) are no text; a tab and a line break are
        if !c.is_control() || c == '\n' || c == '\t' {
            self.out.push(c);
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (text, _, _) = self.pending_enc.decode(&self.pending);
        self.out.extend(text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t'));
        self.pending.clear();
    }
}

/// The text with each line's trailing spaces and the space and blank lines at its ends dropped.
fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::rtf_to_text;

    #[test]
    fn reads_the_body_not_the_tables() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Arial;}}{\colortbl;\red0\green0\blue0;}
{\info{\author Dr Who}{\title Smith John}}{\header Page header}
\pard\plain\f0\fs20 Chief complaint: chest pain.\par
BP 140/90\tab HR 88\par
{\*\generator Riched20;}{\field{\*\fldinst HYPERLINK x}{\fldrslt link text}}\par
caf\'e9 \{braces\} back\\slash\par }";
        let text = rtf_to_text(rtf).unwrap();
        assert_eq!(text, "Chief complaint: chest pain.\nBP 140/90\tHR 88\nlink text\ncafé {braces} back\\slash");
    }

    #[test]
    fn japanese_in_shift_jis_fonts_and_unicode() {
        // Word: a font of charset 128 (Shift_JIS) in an ANSI document; 発熱 = 94 AD 94 4D
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}{\f1\fcharset128 MS Mincho;}}
\f1 \'94\'ad\'94\'4d\f0  38.5\par
\uc2\u30330??\u-30656?? end\par
\ansicpg932\f0 \'8c\'8c\'88\'b3}";
        let text = rtf_to_text(rtf).unwrap();
        // \u-30656 is U+8840 (negative past U+7FFF), the fallback of two characters after each skipped
        assert_eq!(text, "発熱 38.5\n発血 end\n血圧");
    }

    #[test]
    fn surrogate_pairs_bin_data_and_broken_input() {
        let rtf = br"{\rtf1 a\u-10179?\u-8694?b{\pict\bin4 }}}}}c}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "a\u{1F60A}bc");
        assert!(rtf_to_text(b"plain text").is_err());
        // truncated and unbalanced documents: what was read, no panic
        for bad in [
            &br"{\rtf1 abc\'9"[..],
            br"{\rtf1 x\",
            br"{\rtf1 {{{{ y",
            br"{\rtf1 \u99999999999 z}",
            br"{\rtf1\uc99999 \u97 q}",
        ] {
            let _ = rtf_to_text(bad).unwrap();
        }
        assert_eq!(rtf_to_text(br"{\rtf1 {{{{ y").unwrap(), "y");
    }

    #[test]
    fn unicode_copies_and_hidden_text() {
        // Word's `\upr`: the ANSI text, then the same in Unicode; read once, from the Unicode
        let rtf =
            br"{\rtf1\ansi {\upr{??}{\*\ud{\u-28108?\u26408?}}} x {\v hidden}{\v\v0 shown} {\info{\upr{a}{\*\ud{b}}}}}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "鈴木 x shown");
    }
}
