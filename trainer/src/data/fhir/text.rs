//! The text of a FHIR resource: an attachment's bytes in their charset, an XHTML narrative as plain text.

use super::Bad;

/// The text of an attachment in the charset its content type names (UTF-8 when none; Shift_JIS,
/// EUC-JP and ISO-2022-JP are common in Japanese systems), and whether the charset was guessed: bytes
/// that are not UTF-8 under a content type that names none are read in the Japanese encoding they
/// decode in as Japanese text, where one does ([`crate::data::charset::detect`]). Undecodable bytes
/// are an error.
pub(super) fn decode_text(content_type: &str, bytes: Vec<u8>) -> std::result::Result<(String, bool), Bad> {
    let said = |r: std::result::Result<String, Bad>| r.map(|t| (t, false));
    let decode = |enc: &'static encoding_rs::Encoding, bytes: &[u8]| {
        let (text, had_errors) = enc.decode_without_bom_handling(bytes);
        if had_errors {
            Err("attachment text does not decode in its charset")
        } else {
            no_nul(text.into_owned())
        }
    };
    // a byte-order mark (UTF-8, UTF-16, as Windows tools write text) says the encoding, whatever the
    // content type says or leaves out
    if let Some((enc, n)) = encoding_rs::Encoding::for_bom(&bytes) {
        return said(decode(enc, &bytes[n..]));
    }
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    // UTF-16 without a mark (valid UTF-8, its NULs hiding every identifier from the guard)
    if let Some(enc) = charset.is_none().then(|| crate::data::charset::utf16_without_mark(&bytes)).flatten() {
        return said(decode(enc, &bytes));
    }
    // ISO-2022-JP is 7-bit and so valid UTF-8: its escapes tell it (it was read as ASCII with escape
    // codes, the guard blind to the names in it)
    if charset.is_none() && bytes.contains(&0x1b) {
        use crate::data::charset::{detect, Choice, Chosen};
        if let Some((enc, 0, Chosen::Guessed)) = detect(Choice::Auto, &bytes, true) {
            if enc == encoding_rs::ISO_2022_JP {
                return decode(enc, &bytes).map(|t| (t, true));
            }
        }
    }
    match charset {
        None => match String::from_utf8(bytes) {
            Ok(t) => said(no_nul(t)),
            Err(e) => {
                let bytes = e.into_bytes();
                use crate::data::charset::{detect, Choice, Chosen};
                match detect(Choice::Auto, &bytes, true) {
                    Some((enc, 0, Chosen::Guessed)) if enc != encoding_rs::UTF_8 => {
                        decode(enc, &bytes).map(|t| (t, true))
                    }
                    _ => Err("attachment text is not UTF-8"),
                }
            }
        },
        Some(label) => {
            // the WHATWG labels, and the names Windows and Python give the Japanese ones (cp932, euc_jp)
            let enc = crate::data::charset::encoding_for_label(label).ok_or("attachment charset is unknown")?;
            said(decode(enc, &bytes))
        }
    }
}

/// Text with many NULs is no note (binary data, or UTF-16 its content type does not say): not read, as
/// the guard would not see through it. A few stray NULs in text (two, or at most 1 in 100 bytes, as an EHR's
/// padding leaves them) are spaces, and the note is read (found by a tester: one NUL dropped a note the
/// CSV reader read).
pub(super) fn no_nul(text: String) -> std::result::Result<String, Bad> {
    let nul = text.bytes().filter(|&b| b == 0).count();
    if nul == 0 {
        Ok(text)
    } else if nul <= 2 || nul * 100 <= text.len() {
        Ok(text.replace('\0', " "))
    } else {
        Err("attachment text holds NUL bytes")
    }
}

/// Plain text of an HTML document or fragment (an attachment in `text/html`, as EHRs send notes): the
/// `<head>`, `<script>` and `<style>` elements and comments dropped, the rest as [`xhtml_to_text`].
pub fn html_to_text(html: &str) -> String {
    // one pass over the `<`s: an element dropped is skipped to its end tag, found once (linear)
    let lower = html.to_ascii_lowercase();
    let mut kept = String::with_capacity(html.len());
    let (mut at, mut from) = (0, 0);
    while let Some(i) = lower[from..].find('<').map(|i| from + i) {
        let rest = &lower[i..];
        // an element's name ends at `>`, a space or `/` (`<header>` is no `<head>`)
        let named = |name: &str| {
            rest.starts_with(name)
                && rest[name.len()..].starts_with(|c: char| c == '>' || c == '/' || c.is_ascii_whitespace())
        };
        let close = if rest.starts_with("<!--") {
            Some("-->")
        } else if named("<head") {
            Some("</head>")
        } else if named("<script") {
            Some("</script>")
        } else if named("<style") {
            Some("</style>")
        } else {
            None
        };
        let Some(close) = close else {
            from = i + 1;
            continue;
        };
        kept.push_str(&html[at..i]);
        at = match lower[i + 4..].find(close) {
            Some(j) => i + 4 + j + close.len(),
            // a head whose end tag is left out (HTML allows it) ends where the body starts
            None if close == "</head>" => lower[i + 4..].find("<body").map_or(html.len(), |j| i + 4 + j),
            None => html.len(),
        };
        from = at;
    }
    kept.push_str(&html[at..]);
    xhtml_to_text(&kept)
}

/// Plain text of an XHTML fragment: tags dropped (block tags become line breaks), entities decoded.
///
/// Never panics: slicing is at positions of ASCII bytes found in the text (always char boundaries), a
/// `<` with no closing `>` and an unknown or unterminated entity stay as literal text.
pub fn xhtml_to_text(div: &str) -> String {
    let mut out = String::with_capacity(div.len());
    let mut rest = div;
    // no `>` after some point: every `<` from there is text (not searched again: linear)
    let mut no_close = false;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            let Some(close) = (if no_close { None } else { rest.find('>') }) else {
                no_close = true;
                // not a tag (a malformed fragment or a bare `<` in text): keep it as text
                out.push('<');
                rest = &rest[1..];
                continue;
            };
            let tag = rest[1..close].trim_start_matches('/').to_ascii_lowercase();
            let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
            if matches!(
                name,
                "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol"
            ) && !out.ends_with('\n')
                && !out.is_empty()
            {
                out.push('\n');
            } else if matches!(name, "td" | "th") && !out.ends_with([' ', '\n']) && !out.is_empty() {
                out.push(' ');
            }
            rest = &rest[close + 1..];
        } else {
            match decode_entity(rest) {
                Some((c, len)) => {
                    out.push(c);
                    rest = &rest[len..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// The character of the entity `rest` starts with (`&amp;`, `&#x3042;`, ...) and the entity's length in
/// bytes; `None` when it is not one. The `;` is looked for among the first 12 bytes, not chars: a byte
/// index of `;` is always a char boundary, a byte count cut into Japanese text is not.
fn decode_entity(rest: &str) -> Option<(char, usize)> {
    let head = &rest.as_bytes()[..rest.len().min(12)];
    let e = memchr::memchr(b';', head)?;
    let ent = rest.get(1..e)?;
    let c = match ent {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => {
            let num = ent.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, e + 1))
}
