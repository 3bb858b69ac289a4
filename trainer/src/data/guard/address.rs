//! Postal addresses in free text:
//! - a prefecture (東京都, 北海道, 大阪府, 京都府, the 43 県) followed, within its run of place-name
//!   characters, by a municipality (市, 区, 町, 村, 郡): 神奈川県横浜市中区山下町1-2;
//! - block numbers: N丁目, N番地, N番M号 (with the place name before them), and N-N(-N) right after a
//!   place-name ending (町, 条, 通, 丁): 本町1-2-3;
//! - postal codes after 〒 or 郵便番号: NNN-NNNN or NNNNNNN;
//! - English street addresses: a house number, 1 to 3 capitalized words and a street suffix
//!   (`12 Baker Street`, `500 W Main St.`).
//!
//! A lone prefecture (東京都在住) or city is not flagged: it is coarser than what identifies a person.
//! Every check reads a bounded window around one position: the scan is linear in the text.

use super::name::{is_kanji, is_katakana};
use super::{fold, Finding, IdentifierKind};

const PREFECTURES: &[&str] = &[
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

const STREET: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Lane",
    "Ln",
    "Drive",
    "Dr",
    "Court",
    "Ct",
    "Way",
    "Place",
    "Pl",
    "Terrace",
    "Parkway",
    "Pkwy",
    "Highway",
    "Hwy",
    "Circle",
    "Square",
    "Trail",
];

/// Characters of a Japanese address after its prefecture: place names, block numbers, their joiners.
fn is_place(c: char) -> bool {
    let f = fold(c);
    is_kanji(c) || is_katakana(c) || f.is_ascii_digit() || f == '-' || matches!(c, 'の' | 'ノ' | 'ケ' | 'ヶ')
}

fn is_numeral(c: char) -> bool {
    fold(c).is_ascii_digit() || "一二三四五六七八九十".contains(c)
}

/// The end of the address run that starts at `i`: place characters, at most `max` of them.
fn place_run(text: &str, i: usize, max: usize, ops: &mut u64) -> (usize, bool) {
    let mut end = i;
    let mut municipality = false;
    for (k, c) in text[i..].char_indices().take(max) {
        *ops += 1;
        if !is_place(c) {
            break;
        }
        municipality |= matches!(c, '市' | '区' | '町' | '村' | '郡');
        end = i + k + c.len_utf8();
    }
    (end, municipality)
}

/// The start of the place name that ends at `end`: kanji and katakana, at most 10 characters.
fn place_before(text: &str, end: usize, ops: &mut u64) -> usize {
    let mut start = end;
    for (k, c) in text[..end].char_indices().rev().take(10) {
        *ops += 1;
        if !(is_kanji(c) || is_katakana(c) || is_numeral(c) || c == 'の') {
            break;
        }
        start = k;
    }
    start
}

/// The digits (and single hyphens between them) starting at `i`: their end and group lengths.
fn digit_groups(text: &str, i: usize, ops: &mut u64) -> (usize, [usize; 4], usize) {
    let mut groups = [0usize; 4];
    let mut g = 0;
    let mut end = i;
    let mut last_digit = false;
    for (k, c) in text[i..].char_indices().take(20) {
        *ops += 1;
        let f = fold(c);
        if f.is_ascii_digit() {
            if g < 4 {
                groups[g] += 1;
            }
            last_digit = true;
            end = i + k + c.len_utf8();
        } else if f == '-' && last_digit && g < 3 {
            g += 1;
            last_digit = false;
        } else {
            break;
        }
    }
    (end, groups, if last_digit { g + 1 } else { g })
}

/// An English street address starting at the house number at `i`: its end.
fn street(text: &str, i: usize, ops: &mut u64) -> Option<usize> {
    let mut at = i;
    let mut digits = 0;
    for c in text[i..].chars().take(7) {
        *ops += 1;
        if !c.is_ascii_digit() {
            break;
        }
        digits += 1;
        at += 1;
    }
    if !(1..=6).contains(&digits) || !text[at..].starts_with(' ') {
        return None;
    }
    at += 1;
    let mut words = 0;
    // up to 3 name words (a compass letter such as `W` counts), then the suffix
    while words <= 4 {
        let w = &text[at..];
        let len = w.bytes().take(20).take_while(u8::is_ascii_alphabetic).count();
        *ops += len as u64 + 1;
        if len == 0 || !w.as_bytes()[0].is_ascii_uppercase() {
            return None;
        }
        let word = &w[..len];
        let after = w[len..].chars().next();
        if words >= 1 && STREET.contains(&word) && !after.is_some_and(|c| c.is_alphanumeric()) {
            let end = at + len;
            return Some(if w[len..].starts_with('.') { end + 1 } else { end });
        }
        words += 1;
        at += len;
        if !text[at..].starts_with(' ') {
            return None;
        }
        at += 1;
    }
    None
}

/// The first chars of the prefectures: one match, not 47 comparisons per kanji.
fn prefecture_first(c: char) -> bool {
    matches!(
        c,
        '三' | '京'
            | '佐'
            | '兵'
            | '北'
            | '千'
            | '和'
            | '埼'
            | '大'
            | '奈'
            | '宮'
            | '富'
            | '山'
            | '岐'
            | '岡'
            | '岩'
            | '島'
            | '広'
            | '徳'
            | '愛'
            | '新'
            | '東'
            | '栃'
            | '沖'
            | '滋'
            | '熊'
            | '石'
            | '神'
            | '福'
            | '秋'
            | '群'
            | '茨'
            | '長'
            | '青'
            | '静'
            | '香'
            | '高'
            | '鳥'
            | '鹿'
    )
}

/// True for the chars an address is found from: a prefecture's first char, `〒`, `郵`(便番号),
/// `丁`(目), `番`, a digit (the scan looks nowhere else).
pub(super) fn may_start(c: char) -> bool {
    matches!(c, '〒' | '郵' | '丁' | '番') || fold(c).is_ascii_digit() || prefecture_first(c)
}

/// The address that starts at the char `c` at byte `i` (`prev` the char before it), if one does.
pub(super) fn at(text: &str, i: usize, c: char, prev: Option<char>, ops: &mut u64) -> Option<std::ops::Range<usize>> {
    let rest = &text[i..];
    let mut hit: Option<std::ops::Range<usize>> = None;
    if prefecture_first(c) {
        if let Some(p) = PREFECTURES.iter().find(|p| rest.starts_with(**p)) {
            let (end, municipality) = place_run(text, i + p.len(), 40, ops);
            if municipality {
                hit = Some(i..end);
            }
        }
    }
    if hit.is_none() && (c == '〒' || (c == '郵' && rest.starts_with("郵便番号"))) {
        let mut j = i + if c == '〒' { c.len_utf8() } else { "郵便番号".len() };
        for _ in 0..3 {
            match text[j..].chars().next() {
                Some(s @ (' ' | '　' | ':' | '：')) => j += s.len_utf8(),
                _ => break,
            }
        }
        let (end, groups, g) = digit_groups(text, j, ops);
        if (g == 2 && groups[..2] == [3, 4]) || (g == 1 && groups[0] == 7) {
            hit = Some(i..end);
        }
    }
    if hit.is_none() && ((c == '丁' && rest.starts_with("丁目")) || c == '番') && prev.is_some_and(is_numeral) {
        let is_ban = c == '番' && !rest.starts_with("番地");
        let (end, _) = place_run(text, i, 16, ops);
        // N番 alone is a rank (3番目); N番M号 is a block
        let go = text[i..end].find('号').map(|k| i + k + '号'.len_utf8());
        match (is_ban, go) {
            (false, _) => hit = Some(place_before(text, i, ops)..end),
            (true, Some(go)) => hit = Some(place_before(text, i, ops)..go),
            (true, None) => {}
        }
    }
    // N-N after 町/条/通/丁, N-N-N (chome-block-house, the first 1 or 2 digits) after any place name
    // of 2 or more kanji: 本町1-2, 天神8-18-1 (a date's first group has 4 digits)
    if hit.is_none() && fold(c).is_ascii_digit() && prev.is_some_and(is_kanji) {
        let (end, groups, g) = digit_groups(text, i, ops);
        let after_town = prev.is_some_and(|p| matches!(p, '町' | '条' | '通' | '丁')) && (2..=3).contains(&g);
        // a phone number's groups are longer (電話03-1234-5678)
        let chome = g == 3 && groups[0] <= 2 && groups[1] <= 3 && groups[2] <= 3;
        if (after_town || chome) && groups[..g].iter().all(|&n| (1..=4).contains(&n)) {
            let start = place_before(text, i, ops);
            if after_town || text[start..i].chars().filter(|c| is_kanji(*c)).count() >= 2 {
                hit = Some(start..end);
            }
        }
    }
    if hit.is_none() && c.is_ascii_digit() && !prev.is_some_and(|p| p.is_ascii_alphanumeric()) {
        hit = street(text, i, ops).map(|e| i..e);
    }
    hit
}

/// Addresses in `text`: this scanner's own pass (the guard runs all scanners in one pass,
/// [`super::scan`]; this one is its reference in the tests).
pub fn scan(text: &str, found: &mut Vec<Finding>, ops: &mut u64) {
    let mut prev: Option<char> = None;
    // findings end here or before: a run already reported is not reported again from inside
    let mut reported = 0;
    for (i, c) in text.char_indices() {
        *ops += 1;
        if i >= reported {
            if let Some(r) = at(text, i, c, prev, ops) {
                reported = r.end;
                found.push((IdentifierKind::Address, r));
            }
        }
        prev = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(t: &str) -> Vec<&str> {
        let mut f = Vec::new();
        scan(t, &mut f, &mut 0);
        f.into_iter().map(|(_, r)| &t[r]).collect()
    }

    #[test]
    fn japanese_and_english_addresses() {
        assert_eq!(addresses("住所は神奈川県横浜市中区山下町1-2です"), ["神奈川県横浜市中区山下町1-2"]);
        assert_eq!(addresses("〒100-0001 へ送付"), ["〒100-0001"]);
        assert_eq!(addresses("西新宿二丁目8番1号に転居"), ["西新宿二丁目8番1号"]);
        assert_eq!(addresses("lives at 221 Baker Street, London"), ["221 Baker Street"]);
        assert_eq!(addresses("本町1-2-3の自宅"), ["本町1-2-3"]);
    }

    #[test]
    fn prefectures_alone_and_numbers_are_not_addresses() {
        for t in
            ["東京都在住", "大阪府立病院より紹介", "3番目の検査", "lot 1234-5678", "2 tablets daily", "Cr 1.2 mg/dL"]
        {
            assert!(addresses(t).is_empty(), "{t}: {:?}", addresses(t));
        }
    }
}
