//! Finding a CUDA device never panics: on a machine without a GPU, driver, NVRTC or cuBLAS, `probe` and
//! `Cuda::new` return an error naming what is missing (cudarc panics when a library it calls is
//! absent, so `probe` asks for each library first). Runs everywhere; on a GPU host it checks the
//! device it finds.

use kernels::cuda::{probe, Cuda, ProbeError};
use kernels::KernelError;

#[test]
fn probe_names_what_is_missing_instead_of_panicking() {
    match probe(0) {
        Ok(info) => {
            eprintln!("CUDA device: {info:?}");
            assert!(info.device_count >= 1 && info.total_memory > 0 && info.compute_capability.0 >= 5, "{info:?}");
            // a device past the last is named, with the count
            let e = probe(info.device_count).unwrap_err();
            assert_eq!(e, ProbeError::NoDevice { ordinal: info.device_count, count: info.device_count });
        }
        Err(e) => {
            eprintln!("no CUDA here: {e}");
            // SAFETY: only tries to load the library
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                assert_eq!(e, ProbeError::NoDriver);
            }
            assert!(!e.to_string().is_empty());
            // the backend refuses to start with the same reason, as an error
            let err = Cuda::new(0).unwrap_err();
            assert_eq!(err, KernelError::CudaUnavailable(e.clone()));
            assert!(err.to_string().contains(&e.to_string()), "{err}");
        }
    }
}

#[test]
fn driver_too_old_says_which_versions() {
    let e = ProbeError::DriverTooOld { found: 11080, required: 12000, why: "the backend's driver calls" };
    assert_eq!(
        e.to_string(),
        "CUDA driver too old: it supports CUDA 11.8, and the backend's driver calls needs CUDA 12.0 or newer"
    );
}
