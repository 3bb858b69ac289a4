//! Prints PLD and RDP epsilons for a phase (a check against dp_accounting by hand).
use medtrain::privacy::accountant::{pld, rdp, Delta, Phase};
fn main() {
    let a: Vec<f64> = std::env::args().skip(1).map(|v| v.parse().unwrap()).collect();
    let (sigma, q, steps, delta) = (a[0], a[1], a[2] as u64, a[3]);
    let p = Phase::new(sigma, q, steps).unwrap();
    let d = Delta::new(delta).unwrap();
    let t = std::time::Instant::now();
    let e = pld::epsilon(&[p], d).unwrap();
    println!("pld {e:.6} ({:.3} s)  rdp {:.6}", t.elapsed().as_secs_f64(), rdp::epsilon(&[p], d));
}
