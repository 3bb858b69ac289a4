//! Profiling aid: the throughput of the noise generator's parts on one thread.
use kernels::cpu::chacha;
use kernels::{Backend, Cpu, NoiseKey};
use std::time::Instant;

fn main() {
    let mut out = [[0u32; 16]; 16];
    let n = 200_000u64;
    let t = Instant::now();
    for i in 0..n {
        chacha::blocks(&[1; 8], 0, i * 16, &mut out);
        std::hint::black_box(&out);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "chacha20 x16: {:.2} ns per 64-byte block, {:.2} GB/s",
        s * 1e9 / (n * 16) as f64,
        (n * 1024) as f64 / s / 1e9
    );
    let be = Cpu::new(1).unwrap();
    let mut buf = vec![0.0f32; 1 << 22];
    let key = NoiseKey { key: [1; 32], stream: 0 };
    be.add_normal(&mut buf, 1.0, 1.0, 1.0 / 4096.0, &key).unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        be.add_normal(&mut buf, 1.0, 1.0, 1.0 / 4096.0, &key).unwrap();
    }
    println!("add_normal 1 thread: {:.2} ns per normal", t.elapsed().as_secs_f64() * 1e9 / (5 << 22) as f64);
}
