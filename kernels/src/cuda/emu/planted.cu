// planted.cu — two kernels with the bugs the sanitizer runs must catch (tests/cuda_emu.rs asserts that
// they do, so that a clean sanitizer run of the real kernels means something). Emulation only: not in
// the backend's modules.

// y: [N] = 1, without the bounds guard: the last block writes past the end when N is not a multiple
// of the block (AddressSanitizer: heap-buffer-overflow)
extern "C" __global__ void planted_missing_guard(float* y, u64 n) {
    (void)n; // the guard `if (i < n)` is what is missing
    y[mt_first()] = 1.0f;
}

// out: [blockDim] = each thread's right neighbour's value, read from shared memory without the
// barrier between the writes and the reads (ThreadSanitizer: data race)
extern "C" __global__ void planted_missing_barrier(float* out, const float* x) {
    __shared__ float staged[256];
    u32 t = threadIdx.x;
    staged[t] = x[t];
    out[t] = staged[(t + 1) % blockDim.x];
}
