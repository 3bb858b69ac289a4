//! Person names in free text, found by what surrounds them (a name itself looks like any other word):
//! - before an honorific or title: 山田様, 山田 太郎さん, 鈴木殿, 健太君, 佐藤氏, 田中先生, 高橋医師,
//!   スミスさん; the run before it must be 2 or more kanji or katakana, must not be a role (患者さん,
//!   ご家族様, 看護師さん, 主治医先生), and the honorific must not start a word (様子, 殿部, 氏名);
//! - after a cue: 氏名, 患者名, 名前 (a colon optional) or `name:` (any case), then a kanji/kana run or
//!   1 to 3 capitalized words;
//! - after a title: Mr, Mrs, Ms, Miss, Mx, Dr, Prof (a dot optional), then 1 to 3 capitalized words.
//!
//! Every check looks at a bounded window around one position, so the scan is linear in the text.

use super::{fold, Finding, IdentifierKind};

pub(crate) fn is_kanji(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '々' | '〆' | 'ヶ')
}

pub(crate) fn is_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}' | 'ー' | '\u{FF66}'..='\u{FF9F}')
}

pub(crate) fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}')
}

/// Words that end a kanji/katakana run before an honorific without being a name: roles, relatives.
const ROLES: &[&str] = &[
    "患者",
    "家族",
    "本人",
    "主人",
    "息子",
    "娘",
    "母",
    "父",
    "兄",
    "姉",
    "弟",
    "妹",
    "夫",
    "妻",
    "孫",
    "嫁",
    "親",
    "祖母",
    "祖父",
    "先生",
    "者",
    "師",
    "医",
    "士",
    "員",
    "長",
    "皆",
    "各位",
    "客",
    "王",
    "神",
    "仏",
    "室",
    "隣",
    "方",
    "係",
    "担当",
    "御中",
    "奥",
    "様",
    "殿",
    "子供",
    "赤ちゃん",
    "ヘルパー",
    "ケアマネ",
    "ナース",
    "スタッフ",
    "ドクター",
    "ママ",
    "パパ",
    "ドライバー",
    "業者",
    "会社",
    "病院",
    "施設",
    "薬局",
    "センター",
    "クリニック",
    "医院",
    "役所",
    "警察",
    "消防",
    "学校",
    "保育園",
    "幼稚園",
    "皆さん",
    "相手",
    "他",
    "各",
];

/// Honorifics and titles written after a name.
/// Kanji before 様 in words where it means "like" or "manner" (同様, 多様, 模様, 一様).
const SAMA_WORDS: &[&str] = &["同", "多", "異", "模", "仕", "有", "左", "一", "各", "斯"];

const AFTER: &[&str] = &["さん", "様", "殿", "君", "氏", "先生", "医師", "ちゃん"];

const CUES: &[&str] = &["患者氏名", "患者名", "氏名", "名前"];

const TITLES: &[&str] = &["Mrs", "Mr", "Ms", "Miss", "Mx", "Dr", "Prof"];

#[derive(Clone, Copy, PartialEq)]
enum Script {
    Kanji,
    Katakana,
    Hiragana,
}

fn script(c: char) -> Option<Script> {
    if is_kanji(c) {
        Some(Script::Kanji)
    } else if is_katakana(c) {
        Some(Script::Katakana)
    } else if is_hiragana(c) {
        Some(Script::Hiragana)
    } else {
        None
    }
}

/// The name that ends at byte `end` (before an honorific): one kanji or katakana run (its last 6
/// characters at most), and a family name before a single space when the run is short.
fn name_before(text: &str, end: usize, sama: bool, ops: &mut u64) -> Option<usize> {
    let mut cut = end;
    let mut chars = text[..end].char_indices().rev().peekable();
    if let Some(&(i, c)) = chars.peek() {
        if c == ' ' || c == '　' {
            cut = i;
            chars.next();
        }
    }
    let (_, first) = *chars.peek()?;
    let kind = script(first).filter(|s| *s != Script::Hiragana)?;
    let mut start = cut;
    let mut n = 0;
    while let Some(&(i, c)) = chars.peek() {
        *ops += 1;
        if n >= 6 || script(c) != Some(kind) {
            break;
        }
        start = i;
        n += 1;
        chars.next();
    }
    let run = &text[start..cut];
    if n == 0 || ROLES.iter().any(|r| run.ends_with(r)) || (sama && SAMA_WORDS.iter().any(|w| run.ends_with(w))) {
        return None;
    }
    // a family name before a space: 山田 太郎さん, 松本 誠さん (a one-kanji given name needs it)
    let given = n;
    if n <= 3 {
        if let Some(&(_, ' ' | '　')) = chars.peek() {
            chars.next();
            let mut m = 0;
            let mut family = start;
            while let Some(&(i, c)) = chars.peek() {
                *ops += 1;
                if m >= 4 || script(c) != Some(kind) {
                    break;
                }
                family = i;
                m += 1;
                chars.next();
            }
            if m >= 2 || (m >= 1 && given >= 2) {
                start = family;
                n += m;
            }
        }
    }
    (n >= 2).then_some(start)
}

/// The name that starts at byte `start` (after a cue or a title): a kanji/kana run with at most one
/// space inside, or 1 to 3 capitalized words. Its end, if there is one.
fn name_after(text: &str, start: usize, latin_only: bool, ops: &mut u64) -> Option<usize> {
    let rest = &text[start..];
    let first = rest.chars().next()?;
    if let Some(kind) = script(first).filter(|_| !latin_only) {
        let mut end = start;
        let mut n = 0;
        let mut spaces = 0;
        for (i, c) in rest.char_indices().take(12) {
            *ops += 1;
            if script(c) == Some(kind) || (kind != Script::Hiragana && script(c) == Some(Script::Kanji)) {
                end = start + i + c.len_utf8();
                n += 1;
            } else if (c == ' ' || c == '　') && spaces == 0 && n > 0 {
                spaces += 1;
            } else {
                break;
            }
        }
        return (n >= 2).then_some(end);
    }
    let mut end = None;
    let mut words = 0;
    let mut at = start;
    while words < 3 {
        let w = &text[at..];
        let mut cs = w.char_indices();
        let Some((_, c0)) = cs.next() else { break };
        if !fold(c0).is_ascii_uppercase() {
            break;
        }
        let mut len = c0.len_utf8();
        for (i, c) in cs.take(30) {
            *ops += 1;
            let f = fold(c);
            if f.is_ascii_alphabetic() || f == '\'' || f == '-' {
                len = i + c.len_utf8();
            } else {
                break;
            }
        }
        if len < 2 {
            break;
        }
        words += 1;
        end = Some(at + len);
        at += len;
        match text[at..].strip_prefix(' ') {
            Some(_) => at += 1,
            None => break,
        }
    }
    end
}

/// Skips spaces and one `:`/`：`/`=` after a cue; `need_colon` refuses a cue without one.
fn after_colon(text: &str, mut i: usize, need_colon: bool) -> Option<usize> {
    let mut colon = false;
    for _ in 0..4 {
        match text[i..].chars().next() {
            // (a table's cell after its header: `氏名\t山田花子`, `| 氏名 | 山田花子 |`, found by a tester)
            Some(c @ (' ' | '　' | ':' | '：' | '=' | '\t' | '|' | '｜')) => {
                colon |= c != ' ' && c != '　';
                i += c.len_utf8();
            }
            _ => break,
        }
    }
    (colon || !need_colon).then_some(i)
}

/// True for the chars a name is found from: the first char of an honorific, of a cue, of `name`,
/// of a title (the scan looks nowhere else).
pub(super) fn may_start(c: char) -> bool {
    matches!(c, 'さ' | '様' | '殿' | '君' | '氏' | '先' | '医' | 'ち' | '患' | '名' | 'n' | 'N' | 'M' | 'D' | 'P')
}

/// The names found from the char `c` at byte `i` (`prev` the char before it).
pub(super) fn at(text: &str, i: usize, c: char, prev: Option<char>, found: &mut Vec<Finding>, ops: &mut u64) {
    let rest = &text[i..];
    // an honorific after a name
    if matches!(c, 'さ' | '様' | '殿' | '君' | '氏' | '先' | '医' | 'ち') {
        if let Some(h) = AFTER.iter().find(|h| rest.starts_with(**h)) {
            let next = rest[h.len()..].chars().next();
            let starts_word = next.is_some_and(|n| is_kanji(n) || n == '々');
            let role_word = matches!(*h, "先生" | "医師");
            if !starts_word || role_word {
                if let Some(start) = name_before(text, i, *h == "様", ops) {
                    let end = text[..i].trim_end_matches([' ', '　']).len();
                    found.push((IdentifierKind::Name, start..end));
                }
            }
        }
    }
    // a cue before a name
    if matches!(c, '患' | '氏' | '名') && !prev.is_some_and(is_kanji) {
        if let Some(cue) = CUES.iter().find(|q| rest.starts_with(**q)) {
            if let Some(s) = after_colon(text, i + cue.len(), false) {
                if let Some(e) = name_after(text, s, false, ops) {
                    found.push((IdentifierKind::Name, s..e));
                }
            }
        }
    }
    if matches!(c, 'n' | 'N') && rest.len() >= 4 && rest.as_bytes()[..4].eq_ignore_ascii_case(b"name") {
        if let Some(s) = after_colon(text, i + 4, true) {
            if let Some(e) = name_after(text, s, false, ops) {
                found.push((IdentifierKind::Name, s..e));
            }
        }
    }
    // a title before a name
    if matches!(c, 'M' | 'D' | 'P') && !prev.is_some_and(|p| p.is_ascii_alphanumeric()) {
        if let Some(t) = TITLES.iter().find(|t| rest.starts_with(**t)) {
            let mut j = i + t.len();
            if text[j..].starts_with('.') {
                j += 1;
            }
            if text[j..].starts_with(' ') {
                if let Some(e) = name_after(text, j + 1, true, ops) {
                    found.push((IdentifierKind::Name, j + 1..e));
                }
            }
        }
    }
}

/// Names in `text`: this scanner's own pass (the guard runs all scanners in one pass,
/// [`super::scan`]; this one is its reference in the tests).
pub fn scan(text: &str, found: &mut Vec<Finding>, ops: &mut u64) {
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        *ops += 1;
        at(text, i, c, prev, found, ops);
        prev = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &str) -> Vec<&str> {
        let mut f = Vec::new();
        scan(t, &mut f, &mut 0);
        f.into_iter().map(|(_, r)| &t[r]).collect()
    }

    #[test]
    fn honorifics_cues_and_titles() {
        assert_eq!(names("山田様より電話あり"), ["山田"]);
        assert_eq!(names("山田 太郎さんが来院"), ["山田 太郎"]);
        assert_eq!(names("氏名：鈴木花子"), ["鈴木花子"]);
        // a pasted table's cell (found by a tester)
        assert_eq!(names("氏名\t山田花子\t年齢\t45"), ["山田花子"]);
        assert_eq!(names("| 氏名 | 山田花子 |"), ["山田花子"]);
        assert_eq!(names("｜氏名｜山田花子｜"), ["山田花子"]);
        assert_eq!(names("Seen by Dr. Gregory House today"), ["Gregory House"]);
        assert_eq!(names("Patient name: John Smith, 54"), ["John Smith"]);
    }

    #[test]
    fn roles_and_compounds_are_not_names() {
        for t in [
            "患者さんの様子を見る",
            "ご家族様へ説明",
            "殿部に発赤",
            "前回同様に経過観察",
            "看護師さんより報告",
            "brand name lasix",
        ] {
            assert!(names(t).is_empty(), "{t}: {:?}", names(t));
        }
    }
}
