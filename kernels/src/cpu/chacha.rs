//! ChaCha20 (Bernstein's original: 64-bit block counter, 64-bit nonce used as the stream id), 16 blocks
//! at a time in lane-major order so that the compiler keeps each state word of all 16 blocks in one
//! vector register (AVX-512 when the CPU has it, picked at run time; AVX2 otherwise). The output is the
//! standard keystream, transposed: `out[w][l]` is word `w` of block `counter + l`. Tests check it
//! against `rand_chacha`, an independent implementation.

pub const LANES: usize = 16;
pub type Blocks = [[u32; LANES]; 16];

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

#[inline(always)]
fn quarter(x: &mut Blocks, a: usize, b: usize, c: usize, d: usize) {
    for l in 0..LANES {
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(16);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(12);
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(8);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(7);
    }
}

#[inline(always)]
fn initial_word(key: &[u32; 8], stream: u64, counter: u64, w: usize) -> [u32; LANES] {
    match w {
        0..=3 => [SIGMA[w]; LANES],
        4..=11 => [key[w - 4]; LANES],
        12 => std::array::from_fn(|l| counter.wrapping_add(l as u64) as u32),
        13 => std::array::from_fn(|l| (counter.wrapping_add(l as u64) >> 32) as u32),
        14 => [stream as u32; LANES],
        _ => [(stream >> 32) as u32; LANES],
    }
}

#[inline(always)]
fn blocks_impl(key: &[u32; 8], stream: u64, counter: u64, out: &mut Blocks) {
    // the initial state is rebuilt for the final addition rather than kept: 16 fewer live registers
    let mut x: Blocks = std::array::from_fn(|w| initial_word(key, stream, counter, w));
    for _ in 0..10 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for w in 0..16 {
        let init = initial_word(key, stream, counter, w);
        for l in 0..LANES {
            out[w][l] = x[w][l].wrapping_add(init[l]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks_avx512(key: &[u32; 8], stream: u64, counter: u64, out: &mut Blocks) {
    blocks_impl(key, stream, counter, out)
}

/// Blocks `counter .. counter + 16` of the keystream of (key, stream).
pub fn blocks(key: &[u32; 8], stream: u64, counter: u64, out: &mut Blocks) {
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx512() {
        // SAFETY: the CPU supports AVX-512F (isa::avx512 checked it)
        return unsafe { blocks_avx512(key, stream, counter, out) };
    }
    blocks_impl(key, stream, counter, out)
}

/// The 32-byte key as little-endian words.
pub fn key_words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    #[test]
    fn keystream_matches_rand_chacha() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        for (stream, counter) in
            [(0u64, 0u64), (5, 16), (u64::MAX, (1 << 40) + 3), (0x1234_5678_9abc, u32::MAX as u64 - 5)]
        {
            let mut out = [[0u32; LANES]; 16];
            blocks(&key_words(&key), stream, counter, &mut out);
            let mut rng = ChaCha20Rng::from_seed(key);
            rng.set_stream(stream);
            rng.set_word_pos(counter as u128 * 16);
            for l in 0..LANES {
                for w in 0..16 {
                    assert_eq!(out[w][l], rng.next_u32(), "stream {stream} block {} word {w}", counter + l as u64);
                }
            }
        }
    }

    #[test]
    fn rfc_7539_style_zero_key_first_block() {
        // ChaCha20, all-zero key and nonce, block 0 (the original 64-bit-nonce test vector)
        let mut out = [[0u32; LANES]; 16];
        blocks(&[0; 8], 0, 0, &mut out);
        let first: Vec<u8> = (0..4).flat_map(|w| out[w][0].to_le_bytes()).collect();
        assert_eq!(
            first,
            [0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28]
        );
    }
}
