//! The CUDA backend's memory pool on a real device (`MEDTRAIN_TEST_CUDA=1`; without it the test says
//! so and passes). A test binary of its own: it fills most of the device, which would make the
//! parallel tests of tests/cuda_device.rs run out of memory.

use kernels::backend::Backend;
use kernels::cuda::Cuda;

#[test]
fn freed_memory_stays_in_the_pool_and_a_full_pool_is_trimmed_for_a_larger_buffer() {
    if std::env::var("MEDTRAIN_TEST_CUDA").map_or(true, |v| v != "1") {
        eprintln!("skipped: set MEDTRAIN_TEST_CUDA=1 to run the CUDA backend on a GPU");
        return;
    }
    let cuda = Cuda::new(0).unwrap_or_else(|e| panic!("MEDTRAIN_TEST_CUDA=1, but: {e}"));
    let Some(_) = cuda.pool_reserved_bytes().unwrap() else {
        eprintln!("skipped: this device allocates without a stream-ordered pool");
        return;
    };
    let total = cuda.info().total_memory as u64;
    // 45% of the device, given back: the pool keeps it across a synchronization
    let first = (total * 45 / 100 / 4) as usize;
    let buf = cuda.zeros(first).unwrap();
    drop(buf);
    cuda.synchronize().unwrap();
    let (held, _) = cuda.pool_reserved_bytes().unwrap().unwrap();
    assert!(held >= first as u64 * 4, "the pool gave back freed memory at a synchronization: holds {held} bytes");
    // 70%: does not fit beside what the pool holds; the allocation trims the pool and succeeds
    let second = (total * 70 / 100 / 4) as usize;
    let mut big = cuda.zeros(second).unwrap();
    cuda.fill(&mut big, 1.5).unwrap();
    let (held, high) = cuda.pool_reserved_bytes().unwrap().unwrap();
    assert!(held >= second as u64 * 4 && high >= held, "held {held}, high {high}");
    drop(big);
    cuda.synchronize().unwrap();
}
