//! The noise contract (kernels/NOISE.md): every backend reproduces the checked-in test vectors bit for
//! bit, so a run replays on any device and the CPU can audit a GPU run.

mod common;
use common::noise::{cases, input};
use kernels::{Backend, NoiseKey};

fn noise_matches_the_checked_in_vectors(be: &impl Backend) {
    let cases = cases();
    assert_eq!(cases.len(), 4, "vector cases");
    for c in cases {
        assert!(c.expected.len() >= 20, "{}: too few vectors", c.name);
        let x = input(&c);
        let mut buf = be.upload(&x).unwrap();
        be.add_normal(&mut buf, c.std, c.scale, 2f64.powi(c.grid_log2), &c.key).unwrap();
        let out = be.download(&buf).unwrap();
        for &(i, bits) in &c.expected {
            assert_eq!(out[i].to_bits(), bits, "{} element {i}: {} vs {}", c.name, out[i], f32::from_bits(bits));
        }
    }
}

fn noise_of_a_prefix_is_the_prefix_of_the_noise(be: &impl Backend) {
    // element i depends on (key, stream, i) only: a shorter buffer gets the first values of a longer one
    let key = NoiseKey { key: [3; 32], stream: 9 };
    let mut long = be.upload(&vec![0.5; 10_000]).unwrap();
    let mut short = be.upload(&vec![0.5; 4_100]).unwrap();
    be.add_normal(&mut long, 2.0, 0.5, 2f64.powi(-11), &key).unwrap();
    be.add_normal(&mut short, 2.0, 0.5, 2f64.powi(-11), &key).unwrap();
    assert_eq!(be.download(&long).unwrap()[..4_100], be.download(&short).unwrap()[..]);
}

fn snapping_grid_that_is_not_a_power_of_two_is_refused(be: &impl Backend) {
    let key = NoiseKey { key: [3; 32], stream: 9 };
    let mut buf = be.upload(&[0.0; 8]).unwrap();
    for grid in [0.0, -0.25, 3e-4, f64::NAN, f64::INFINITY] {
        let e = be.add_normal(&mut buf, 1.0, 1.0, grid, &key).unwrap_err();
        assert!(e.to_string().contains("add_normal") && e.to_string().contains("power of two"), "{e}");
    }
}

backend_tests! {
    noise_vectors => super::noise_matches_the_checked_in_vectors,
    noise_prefix => super::noise_of_a_prefix_is_the_prefix_of_the_noise,
    noise_grid_checked => super::snapping_grid_that_is_not_a_power_of_two_is_refused,
}
