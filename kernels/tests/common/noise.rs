//! The test vectors of the noise contract (kernels/NOISE.md, tests/vectors/noise.txt), parsed.
#![allow(dead_code)]

use kernels::NoiseKey;

const VECTORS: &str = include_str!("../vectors/noise.txt");

pub struct Case {
    pub name: String,
    pub key: NoiseKey,
    pub std: f32,
    pub scale: f32,
    pub grid_log2: i32,
    pub len: usize,
    pub ramp: bool,
    pub expected: Vec<(usize, u32)>,
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("vector line without {name}: {line}"))
}

pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = vec![];
    for line in VECTORS.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("case ") {
            let hex = field(line, "key");
            let key: [u8; 32] = std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
            cases.push(Case {
                name: rest.split_whitespace().next().unwrap().to_string(),
                key: NoiseKey { key, stream: field(line, "stream").parse().unwrap() },
                std: f32::from_bits(u32::from_str_radix(field(line, "std"), 16).unwrap()),
                scale: f32::from_bits(u32::from_str_radix(field(line, "scale"), 16).unwrap()),
                grid_log2: field(line, "grid_log2").parse().unwrap(),
                len: field(line, "len").parse().unwrap(),
                ramp: field(line, "input") == "ramp",
                expected: vec![],
            });
        } else {
            let mut t = line.split_whitespace();
            let i = t.next().unwrap().parse().unwrap();
            let bits = u32::from_str_radix(t.next().unwrap(), 16).unwrap();
            cases.last_mut().expect("an output line before the first case").expected.push((i, bits));
        }
    }
    cases
}

/// The input buffer of a case: zeros, or the ramp `((i * 7919) mod 1001) / 64 - 7.8125`.
pub fn input(c: &Case) -> Vec<f32> {
    (0..c.len).map(|i| if c.ramp { ((i * 7919) % 1001) as f32 / 64.0 - 7.8125 } else { 0.0 }).collect()
}
