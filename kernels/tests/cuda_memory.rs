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
    // sized from what is free (another process may hold some of the device)
    let available = cuda.memory_limit().unwrap();
    assert!(available <= cuda.info().total_memory as u64, "{available} bytes available");
    // 45% of it, given back: the pool keeps it across a synchronization
    let first = (available * 45 / 100 / 4) as usize;
    let buf = cuda.zeros(first).unwrap();
    drop(buf);
    cuda.synchronize().unwrap();
    let (held, _) = cuda.pool_reserved_bytes().unwrap().unwrap();
    assert!(held >= first as u64 * 4, "the pool gave back freed memory at a synchronization: holds {held} bytes");
    // what the pool keeps unused counts as available
    let now = cuda.memory_limit().unwrap();
    assert!(now + (1 << 30) >= available, "{now} bytes available with the pool holding {held}, {available} before");
    // 70%: does not fit beside what the pool holds; the allocation trims the pool and succeeds
    let second = (available * 70 / 100 / 4) as usize;
    let mut big = cuda.zeros(second).unwrap();
    cuda.fill(&mut big, 1.5).unwrap();
    let (held, high) = cuda.pool_reserved_bytes().unwrap().unwrap();
    assert!(held >= second as u64 * 4 && high >= held, "held {held}, high {high}");
    // 1 where the driver left the pool's free memory to us, 0 where it trimmed the pool itself
    eprintln!("the pool gave its free memory back {} time(s)", cuda.pool_releases());
    assert!(cuda.pool_releases() <= 1, "{} releases for one allocation", cuda.pool_releases());
    drop(big);
    cuda.synchronize().unwrap();
}
