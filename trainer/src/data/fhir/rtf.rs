//! Plain text of an RTF document: a note in `text/rtf` (as EHRs send clinical notes, often beside or
//! instead of HTML). One linear pass over the bytes, no recursion, never panics.
//!
//! Read: the text of the document's body in the encoding RTF gives it: `\ansicpg` (the document's
//! code page: 932 is Shift_JIS), a font's `\fcharset` or `\cpg` (Word writes Japanese in a font of
//! charset 128 as `\'82\'a0` byte pairs), `\uN` Unicode characters with their `\ucN` fallbacks
//! skipped; `\par`, `\line`, `\row`, `\page` as line breaks, `\tab` and `\cell` as spaces between
//! values. Not read: destinations that are not the note's text (the font, colour and style tables,
//! `\info` (author, title), pictures and objects, headers and footers, field instructions, every
//! `{\*...}` group, index and contents entries, the old numbering's text), hidden text (`\v`) and
//! tracked deletions (`\deleted`), the ANSI copy of text `\upr` also gives in Unicode (its `\ud`), and
//! `\bin` data. Double-byte text is read in the font `\dbch\afN` names (Word's associated font for
//! it), raw Shift_JIS pairs whose second byte is `\`, `{` or `}` as text; a Symbol or Wingdings font's
//! bytes (`\fcharset2`: bullets, check boxes, Greek letters such as the μ of μg) as the characters
//! they show, or not at all.

use encoding_rs::Encoding;
use std::collections::HashMap;

/// Groups deeper than this are read in the state of the deepest one kept (a document of a million
/// `{` kept a million states).
const MAX_DEPTH: usize = 1024;

/// How a font's bytes are read.
#[derive(Clone, Copy, PartialEq)]
enum FontEnc {
    Enc(&'static Encoding),
    /// `\fcharset2`: a symbol font, its bytes glyphs ([`symbol_char`])
    Symbol(SymbolFont),
}

#[derive(Clone, Copy, PartialEq)]
enum SymbolFont {
    /// Symbol and the like: Greek letters and mathematical signs
    Symbol,
    /// Wingdings: bullets, check boxes and pictures
    Wingdings,
}

/// The character a byte of a symbol font shows, where it is one a note may mean (a bullet, a check
/// box, a Greek letter, a sign); `None` for the pictures.
fn symbol_char(font: SymbolFont, c: u8) -> Option<char> {
    const GREEK_UPPER: &str = "ΑΒΧΔΕΦΓΗΙϑΚΛΜΝΟΠΘΡΣΤΥςΩΞΨΖ";
    const GREEK_LOWER: &str = "αβχδεφγηιϕκλμνοπθρστυϖωξψζ";
    match font {
        SymbolFont::Wingdings => Some(match c {
            0x6C => '●',
            0x6E => '■',
            0x6F => '□',
            0x71 => '❑',
            0x78 => '⌧',
            0x9F | 0xA7 => '▪',
            0xA8 => '◻',
            0xD8 => '➢',
            0xFB => '✗',
            0xFC => '✓',
            0xFD => '☒',
            0xFE => '☑',
            _ => return None,
        }),
        SymbolFont::Symbol => Some(match c {
            b'A'..=b'Z' => GREEK_UPPER.chars().nth(usize::from(c - b'A'))?,
            b'a'..=b'z' => GREEK_LOWER.chars().nth(usize::from(c - b'a'))?,
            0x22 => '∀',
            0x24 => '∃',
            0x27 => '∋',
            0x40 => '≅',
            0x5C => '∴',
            0x5E => '⊥',
            0x7E => '∼',
            0x20..=0x3F | 0x5B | 0x5D | 0x5F | 0x7B..=0x7D => char::from(c),
            0xA2 => '′',
            0xA3 => '≤',
            0xA5 => '∞',
            0xAC => '←',
            0xAD => '↑',
            0xAE => '→',
            0xAF => '↓',
            0xB0 => '°',
            0xB1 => '±',
            0xB2 => '″',
            0xB3 => '≥',
            0xB4 => '×',
            0xB5 => '∝',
            0xB7 => '•',
            0xB8 => '÷',
            0xB9 => '≠',
            0xBA => '≡',
            0xBB => '≈',
            0xD6 => '√',
            _ => return None,
        }),
    }
}

/// Whether `c` starts a character of two bytes in `enc` (its second byte may be `\`, `{` or `}`).
fn lead_byte(enc: &'static Encoding, c: u8) -> bool {
    if enc == encoding_rs::SHIFT_JIS {
        matches!(c, 0x81..=0x9F | 0xE0..=0xFC)
    } else if enc == encoding_rs::GBK || enc == encoding_rs::BIG5 || enc == encoding_rs::EUC_KR {
        (0x81..=0xFE).contains(&c)
    } else {
        false
    }
}

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
    /// in double-byte text (`\dbch`, until `\loch` or `\hich`): its bytes are in `dbch_font`
    dbch: bool,
    /// `\af` after `\dbch`: the font of double-byte text
    dbch_font: Option<i32>,
    /// inside `\upr` (text written twice, in ANSI and in Unicode): the destination its `\ud` group,
    /// the Unicode one, is read in; the ANSI one is not read
    upr: Option<Dest>,
    /// hidden text (`\v`): not shown, not read
    hidden: bool,
    /// a tracked deletion (`\deleted`): not read
    deleted: bool,
}

struct Reader {
    out: String,
    /// bytes of text not yet decoded, in `pending_enc`
    pending: Vec<u8>,
    pending_enc: &'static Encoding,
    /// `\ansicpg`: the encoding of text in a font without a charset of its own
    doc_enc: &'static Encoding,
    /// fonts of the font table with a charset or code page of their own
    fonts: HashMap<i32, FontEnc>,
    /// the font being defined in the font table, and its name so far (a symbol font's says which)
    defining: Option<i32>,
    name: Vec<u8>,
    stack: Vec<Group>,
    /// groups opened past [`MAX_DEPTH`] and not closed yet
    too_deep: usize,
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
        name: Vec::new(),
        stack: Vec::new(),
        too_deep: 0,
        group: Group {
            dest: Dest::Text,
            uc: 1,
            font: None,
            dbch: false,
            dbch_font: None,
            upr: None,
            hidden: false,
            deleted: false,
        },
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
            | b"xe"
            | b"tc"
            | b"pn"
            | b"pntxta"
            | b"pntxtb"
            | b"shprslt"
    )
}

impl Reader {
    fn run(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'{' => {
                    self.skip = 0;
                    if self.stack.len() < MAX_DEPTH {
                        self.stack.push(self.group);
                    } else {
                        self.too_deep += 1;
                    }
                    i += 1;
                }
                b'}' if self.too_deep > 0 => {
                    self.skip = 0;
                    self.too_deep -= 1;
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
                    // a raw double-byte character (older Japanese systems write Shift_JIS unescaped):
                    // its second byte is text even where it is `\`, `{` or `}`
                    let pair = c >= 0x81
                        && matches!(self.font_enc(), FontEnc::Enc(enc) if lead_byte(enc, c))
                        && b.get(i + 1).is_some_and(|&t| t >= 0x40 && t != 0x7F);
                    let n = if pair { 2 } else { 1 };
                    for &x in &b[i..i + n] {
                        if self.skip > 0 {
                            self.skip -= 1;
                        } else {
                            self.byte(x);
                        }
                    }
                    i += n;
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
        if self.skip > 0 {
            // a control word in a `\uN`'s fallback counts as one of its characters (`\u8212\emdash`)
            self.skip -= 1;
            return j;
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
                b"f" => {
                    self.defining = param;
                    self.name.clear();
                }
                b"fcharset" if param == Some(2) => {
                    if let Some(f) = self.defining {
                        self.fonts.insert(f, FontEnc::Symbol(SymbolFont::Symbol));
                    }
                }
                b"fcharset" | b"cpg" => {
                    let enc = param.and_then(if word == b"cpg" { code_page } else { charset });
                    if let (Some(f), Some(enc)) = (self.defining, enc) {
                        self.fonts.insert(f, FontEnc::Enc(enc));
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
            b"deleted" => self.group.deleted = param != Some(0),
            b"loch" | b"hich" => self.group.dbch = false,
            b"dbch" => self.group.dbch = true,
            b"af" if self.group.dbch => self.group.dbch_font = param,
            b"mac" => self.doc_enc = encoding_rs::MACINTOSH,
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

    /// A `\uN` character; a surrogate pair's halves (Word writes characters past U+FFFF so) joined; a
    /// symbol font's glyph (U+F020-U+F0FF, as Word writes a Symbol or Wingdings byte) as that byte.
    fn unicode(&mut self, n: u32) {
        match n {
            0xF020..=0xF0FF => {
                if let FontEnc::Symbol(font) = self.font_enc() {
                    if let Some(c) = symbol_char(font, (n - 0xF000) as u8) {
                        self.push(c);
                    }
                }
            }
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

    /// How the current text's bytes are read: its font's (double-byte text's own, `\dbch\af`), else
    /// the document's code page.
    fn font_enc(&self) -> FontEnc {
        let font = if self.group.dbch { self.group.dbch_font.or(self.group.font) } else { self.group.font };
        font.and_then(|f| self.fonts.get(&f).copied()).unwrap_or(FontEnc::Enc(self.doc_enc))
    }

    /// A byte of text in the current font's encoding.
    fn byte(&mut self, c: u8) {
        if self.group.dest == Dest::Fonts {
            // a font's name: a symbol font's tells Wingdings from Symbol
            if let Some(f) = self.defining.filter(|_| self.name.len() < 64) {
                self.name.push(c.to_ascii_lowercase());
                if let Some(FontEnc::Symbol(kind)) = self.fonts.get_mut(&f) {
                    let wingdings = self.name.windows(8).any(|w| w == b"wingding");
                    *kind = if wingdings { SymbolFont::Wingdings } else { SymbolFont::Symbol };
                }
            }
            return;
        }
        if self.group.dest != Dest::Text || self.group.hidden || self.group.deleted {
            return;
        }
        let enc = match self.font_enc() {
            FontEnc::Enc(enc) => enc,
            FontEnc::Symbol(font) => {
                if let Some(ch) = symbol_char(font, c) {
                    self.push(ch);
                }
                return;
            }
        };
        if enc != self.pending_enc {
            self.flush();
            self.pending_enc = enc;
        }
        self.pending.push(c);
    }

    /// A character of text.
    fn push(&mut self, c: char) {
        if self.group.dest != Dest::Text || self.group.hidden || self.group.deleted {
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
    fn symbol_fonts_associated_fonts_and_raw_double_bytes() {
        // a Symbol bullet and μ, Wingdings check boxes (bytes and Word's U+F0xx), in a 932 document
        let rtf = br"{\rtf1\ansi\ansicpg932{\fonttbl{\f0 Century;}{\f3\fcharset2 Symbol;}{\f4\fcharset2 Wingdings;}}
{\listtext\f3 \'b7\tab}Item 5 {\f3 m}g\par
{\f4 \'fe} Yes {\f4 \'a8} No {\f4\u-3842\'fe}\par}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "•\tItem 5 μg\n☑ Yes ◻ No ☑");
        // Word's associated font for double-byte text in an ANSI document: 日本
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0\fcharset0 Times;}{\f11\fcharset128 MS Mincho;}}\loch\f0\hich\af0\dbch\af11 \'93\'fa\'96\'7b\loch  caf\'e9}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "日本 café");
        // raw Shift_JIS whose second bytes are `}` and `\`: マ (83 7D), 表 (95 5C)
        let mut rtf = br"{\rtf1\ansi\ansicpg932 ".to_vec();
        rtf.extend([0x83, 0x7D, 0x95, 0x5C, b'x', b'}']);
        assert_eq!(rtf_to_text(&rtf).unwrap(), "マ表x");
    }

    #[test]
    fn fallbacks_deletions_entries_and_depth() {
        let rtf = br"{\rtf1\uc1\u8212\emdash a{\deleted old}{\xe index}{\tc toc} b\par}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "\u{2014}a b");
        let mut deep = br"{\rtf1 ".to_vec();
        deep.extend(std::iter::repeat_n(b'{', 100_000));
        deep.extend(b"deep");
        deep.extend(std::iter::repeat_n(b'}', 100_000));
        deep.extend(b" top}");
        assert_eq!(rtf_to_text(&deep).unwrap(), "deep top");
    }

    #[test]
    fn unicode_copies_and_hidden_text() {
        // Word's `\upr`: the ANSI text, then the same in Unicode; read once, from the Unicode
        let rtf =
            br"{\rtf1\ansi {\upr{??}{\*\ud{\u-28108?\u26408?}}} x {\v hidden}{\v\v0 shown} {\info{\upr{a}{\*\ud{b}}}}}";
        assert_eq!(rtf_to_text(rtf).unwrap(), "鈴木 x shown");
    }
}
