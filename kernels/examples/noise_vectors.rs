//! Writes the noise contract's test vectors (kernels/tests/vectors/noise.txt) from the CPU backend, the
//! reference: `cargo run -p medtrain-kernels --example noise_vectors > kernels/tests/vectors/noise.txt`.
//! Run it only when the contract (kernels/NOISE.md) changes on purpose; the test checks every backend
//! against the checked-in file.
use kernels::{Backend, Cpu, NoiseKey};

/// The exact inputs of the `ramp` cases: multiples of 1/64 in [-7.8, 7.8], exact in f32 everywhere.
fn ramp(i: usize) -> f32 {
    ((i * 7919) % 1001) as f32 / 64.0 - 7.8125
}

fn main() {
    let be = Cpu::new(1).unwrap();
    println!("# Test vectors of the noise contract (kernels/NOISE.md), written by examples/noise_vectors.rs.");
    println!("# case <name> key=<64 hex digits> stream=<u64> std=<f32 bits> scale=<f32 bits> grid_log2=<i32>");
    println!("#      len=<elements> input=zeros|ramp (ramp: x_i = ((i*7919) mod 1001)/64 - 7.8125)");
    println!("# then lines `<index> <output f32 bits>`. grid_log2=-60 on zeros pins the unsnapped normals.");
    println!("# Indices cover the first batch, pair halves (p, 128+p), the second batch, elements computed");
    println!("# on the extension path (radius word < 2^24, marked `ext`), and the second chunk (>= 4096).");
    let keys: [[u8; 32]; 2] = [std::array::from_fn(|i| i as u8), [0xa5; 32]];
    let cases: [(&str, usize, u64, f32, f32, i32, &str); 4] = [
        ("normals_counting_key", 0, 0, 1.0, 1.0, -60, "zeros"),
        ("normals_step7_param3", 1, (7 << 16) | 3, 1.0, 1.0, -60, "zeros"),
        ("snapped_dp_step", 0, (2 << 16) | 1, 1.3, 1.0 / 256.0, -12, "ramp"),
        ("snapped_small_std", 1, 42, 0.07, 0.25, -16, "ramp"),
    ];
    let len = 9000;
    for (name, k, stream, std, scale, grid_log2, input) in cases {
        let key = NoiseKey { key: keys[k], stream };
        let x: Vec<f32> = (0..len).map(|i| if input == "zeros" { 0.0 } else { ramp(i) }).collect();
        let mut out = x.clone();
        be.add_normal(&mut out, std, scale, 2f64.powi(grid_log2), &key).unwrap();
        let hex: String = keys[k].iter().map(|b| format!("{b:02x}")).collect();
        println!(
            "case {name} key={hex} stream={stream} std={:08x} scale={:08x} grid_log2={grid_log2} len={len} input={input}",
            std.to_bits(),
            scale.to_bits()
        );
        // the extension path: radius words below 2^24, found from the raw keystream
        let words = kernels::cpu::chacha::key_words(&keys[k]);
        let mut ext = vec![];
        for batch in 0..len.div_ceil(256) {
            let mut b = [[0u32; 16]; 16];
            kernels::cpu::chacha::blocks(&words, stream, batch as u64 * 16, &mut b);
            for w in 0..8 {
                for l in 0..16 {
                    if b[w][l] < 1 << 24 {
                        let p = w * 16 + l;
                        ext.extend([batch * 256 + p, batch * 256 + 128 + p]);
                    }
                }
            }
        }
        let mut idx: Vec<usize> =
            (0..8).chain([127, 128, 129, 255, 256, 257, 511, 4095, 4096, 4097, 8191, 8999]).collect();
        // a few from the first chunk and a few from later ones (each chunk has its own reserve)
        let first = ext.iter().copied().filter(|&i| i < 4096).take(3);
        let ext: Vec<usize> = first.chain(ext.iter().copied().filter(|&i| (4096..len).contains(&i)).take(3)).collect();
        idx.extend(&ext);
        idx.sort_unstable();
        idx.dedup();
        for i in idx {
            let mark = if ext.contains(&i) { " ext" } else { "" };
            println!("{i} {:08x}{mark}", out[i].to_bits());
        }
    }
}
