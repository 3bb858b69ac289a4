//! FHIR `date`, `dateTime` and `instant` values as seconds since the Unix epoch (UTC).
//!
//! Partial dates (`2024`, `2024-03`, `2024-03-05`) mean the start of that period. A time without a zone
//! offset is taken as UTC (FHIR says such times are local to the source; one export shares one zone).

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn num(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let s = b.get(at..at + len)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses a FHIR date/dateTime/instant; `None` when it is not one.
pub fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let y = num(b, 0, 4)? as i64;
    let (mut m, mut d) = (1, 1);
    let mut i = 4;
    if b.len() > i {
        if b[i] != b'-' {
            return None;
        }
        m = num(b, 5, 2)?;
        i = 7;
        if b.len() > i {
            if b[i] != b'-' {
                return None;
            }
            d = num(b, 8, 2)?;
            i = 10;
        }
    }
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut t = days_from_civil(y, m, d) * 86_400;
    if b.len() == i {
        return Some(t);
    }
    if b[i] != b'T' && b[i] != b' ' {
        return None;
    }
    let (hh, mm) = (num(b, i + 1, 2)?, num(b, i + 4, 2)?);
    if b.get(i + 3) != Some(&b':') || hh > 23 || mm > 59 {
        return None;
    }
    i += 6;
    let mut ss = 0;
    if b.get(i) == Some(&b':') {
        ss = num(b, i + 1, 2)?;
        if ss > 60 {
            return None;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    t += (hh * 3600 + mm * 60 + ss) as i64;
    match b.get(i) {
        None => Some(t),
        Some(b'Z') if i + 1 == b.len() => Some(t),
        Some(&c @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let off = (num(b, i + 1, 2)? * 3600 + num(b, i + 4, 2)? * 60) as i64;
            Some(if c == b'+' { t - off } else { t + off })
        }
        _ => None,
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`
pub fn format(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fhir_date_times() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("1970"), Some(0));
        assert_eq!(parse("2024-02-29T12:30:00Z"), Some(1_709_209_800));
        assert_eq!(parse("2024-02-29T21:30:00+09:00"), Some(1_709_209_800));
        assert_eq!(parse("2024-02-29T21:30:00.123+09:00"), Some(1_709_209_800));
        assert_eq!(parse("2024-02-29T12:30"), Some(1_709_209_800));
        for bad in ["2023-02-29", "2024-13-01", "24-01-01", "2024-01-01T25:00:00Z", "2024-01-01T10:00:00+0900", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for t in [0, 1_709_209_800, -86_400 * 365 * 30 + 17, 4_102_444_800] {
            assert_eq!(parse(&format(t)), Some(t));
        }
    }
}
