fn main() -> std::process::ExitCode {
    tune_allocator();
    medtrain::cli::main()
}

/// glibc's allocator returns freed memory above 128 KiB to the kernel at once, so a training step's
/// large temporaries (gemm packing, activations) come back as fresh zeroed pages every step (page faults
/// and clear_page were ~2% of a notes-bert profile). Keeping freed memory in the heap avoids that; the
/// measured gain on a notes-bert DP step is 0-2%, inside the spread of single runs (benches/RESULTS.md).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
