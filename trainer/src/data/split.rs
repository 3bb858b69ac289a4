//! Splits by subject, never by row: a subject's examples are all in one split. MEDS
//! `subject_splits` decide where present; otherwise a keyed hash of the subject id (HMAC-SHA256 with the
//! project's split key), so the assignment is stable across runs and cannot be recomputed without the key.

use super::Dataset;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Tuning,
    HeldOut,
}

impl Split {
    /// MEDS names (`train`, `tuning`, `held_out`) and common synonyms.
    pub fn parse(s: &str) -> Option<Split> {
        match s.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "tuning" | "tune" | "valid" | "validation" | "val" | "dev" => Some(Split::Tuning),
            "held_out" | "heldout" | "test" | "testing" => Some(Split::HeldOut),
            _ => None,
        }
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The split of a subject id from the keyed hash: a uniform number in [0, 1) against the fractions.
pub fn hashed(key: &[u8], subject: &str, tuning: f64, held_out: f64) -> Split {
    let h = hmac_sha256(key, subject.as_bytes());
    let u = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) as f64 / 2f64.powi(64);
    if u < held_out {
        Split::HeldOut
    } else if u < held_out + tuning {
        Split::Tuning
    } else {
        Split::Train
    }
}

/// The split of every subject of the dataset (indexed like `data.subjects`). Subjects whose MEDS split
/// is not one of train/tuning/held_out are an error naming the split (never the subject).
pub fn assign(data: &Dataset, key: &[u8], tuning: f64, held_out: f64) -> Result<Vec<Split>, String> {
    if !(0.0..1.0).contains(&(tuning + held_out)) || tuning < 0.0 || held_out < 0.0 {
        return Err(format!("split fractions tuning {tuning} and held_out {held_out} must be >= 0 and sum below 1"));
    }
    (0..data.subjects.len())
        .map(|i| match data.splits.get(&(i as u32)) {
            // (the value not shown: a swapped column would give a subject's number)
            Some(s) => Split::parse(s).ok_or_else(|| {
                let shown = if s.bytes().any(|b| b.is_ascii_digit()) {
                    "(a value that is not printed)".to_string()
                } else {
                    super::reportable::quoted(s)
                };
                format!("subject_splits: unknown split {shown} (expected train, tuning or held_out)")
            }),
            None => Ok(hashed(key, &data.subjects.names[i], tuning, held_out)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn hashed_split_fractions_and_stability() {
        let n = 20_000;
        let splits: Vec<Split> = (0..n).map(|i| hashed(b"k", &format!("p{i}"), 0.1, 0.2)).collect();
        let frac = |s| splits.iter().filter(|&&x| x == s).count() as f64 / n as f64;
        assert!((frac(Split::HeldOut) - 0.2).abs() < 0.015 && (frac(Split::Tuning) - 0.1).abs() < 0.012);
        assert_eq!(hashed(b"k", "p7", 0.1, 0.2), splits[7]);
        let other: Vec<Split> = (0..n).map(|i| hashed(b"other key", &format!("p{i}"), 0.1, 0.2)).collect();
        assert!(splits.iter().zip(&other).filter(|(a, b)| a != b).count() > n / 5);
    }
}
