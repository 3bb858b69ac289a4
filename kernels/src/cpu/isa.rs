//! Which x86 instruction set the CPU kernels use: AVX-512 where the CPU has it, unless
//! `MEDTRAIN_CPU_ISA=avx2` is set, which makes every kernel that picks its path at run time (gemm, the
//! noise transform, ChaCha20, the Gram tile) take its AVX2 path, as on a CPU without AVX-512. It is how
//! a test checks, on an AVX-512 machine, that a portable run gives the bits an AVX2-only machine would.
//! Read once per process; any other value means the CPU's own choice.

use std::sync::OnceLock;

/// The environment variable that forces the AVX2 paths.
pub const ISA_VAR: &str = "MEDTRAIN_CPU_ISA";

/// True when the kernels may use AVX-512F: the CPU has it and `MEDTRAIN_CPU_ISA` is not `avx2`.
pub fn avx512() -> bool {
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f") && !forced_avx2()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// True when `MEDTRAIN_CPU_ISA=avx2` forces the AVX2 paths.
pub fn forced_avx2() -> bool {
    std::env::var(ISA_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("avx2"))
}
