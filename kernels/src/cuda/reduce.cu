// reduce.cu — row reductions in the semantics of kernels/src/cpu/elementwise.rs. Shape legend: R rows,
// D channels, G privacy groups (or rows of a [G, D] matrix). `=` overwritten, `+=` accumulated into.
//
// group_row_sums keeps the CPU's order exactly (each column sums its group's rows in blocks of 64,
// the block sums added in order), so it gives the CPU's bits. add_row_dots sums in f64 like the CPU,
// but over 32 lanes and a fixed shuffle tree instead of one sequential pass: the order is fixed (the
// same bits on every run and GPU), and the f64 sum rounded to f32 agrees with the CPU's to one f32 ulp.

// x: [R, D] with R = offsets[G] * rows_per_example, offsets: [G + 1] (group g owns examples
// offsets[g] .. offsets[g+1]) -> out: [G, D] = the sum of each group's rows (n = G * D)
extern "C" __global__ void group_row_sums(float* out, const float* x, const u64* offsets, u64 d,
                                          u64 rows_per_example, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 g = i / d;
        u64 col = i % d;
        u64 end = offsets[g + 1] * rows_per_example;
        float total = 0.0f;
        for (u64 block = offsets[g] * rows_per_example; block < end; block += 64) {
            u64 block_end = block + 64 < end ? block + 64 : end;
            float acc = 0.0f;
            for (u64 r = block; r < block_end; ++r) acc = __fadd_rn(acc, x[r * d + col]);
            total = __fadd_rn(total, acc);
        }
        out[i] = total;
    }
}

// The same sums for few, large groups (a non-private step's one group of the whole batch), where one
// thread a column would leave the GPU idle, in two passes that keep the order: block_row_sums sums
// each 64-row block of a group (x: that group's [R, D] rows) into partial: [ceil(R / 64), D]
// (n = ceil(R / 64) * D), then sum_block_rows adds each column's block sums in order into out: [D].
extern "C" __global__ void block_row_sums(float* partial, const float* x, u64 rows, u64 d, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 start = (i / d) * 64;
        u64 col = i % d;
        u64 end = start + 64 < rows ? start + 64 : rows;
        float acc = 0.0f;
        for (u64 r = start; r < end; ++r) acc = __fadd_rn(acc, x[r * d + col]);
        partial[i] = acc;
    }
}

extern "C" __global__ void sum_block_rows(float* out, const float* partial, u64 blocks, u64 d) {
    for (u64 col = mt_first(); col < d; col += mt_stride()) {
        float total = 0.0f;
        for (u64 b = 0; b < blocks; ++b) total = __fadd_rn(total, partial[b * d + col]);
        out[col] = total;
    }
}

// a, b: [G, D] -> out: [G] += dot(a[g], b[g]) in f64, one warp per row (blockDim.x a multiple of 32)
extern "C" __global__ void add_row_dots(float* out, const float* a, const float* b, u64 d, u64 g) {
    const u32 lane = threadIdx.x % 32;
    const u64 warps = mt_stride() / 32;
    for (u64 row = mt_first() / 32; row < g; row += warps) {
        // -0.0 is the neutral element of Rust's f64 `sum`, which the CPU uses
        double s = -0.0;
        for (u64 j = lane; j < d; j += 32) s = __dadd_rn(s, __dmul_rn((double)a[row * d + j], (double)b[row * d + j]));
        for (u32 offset = 16; offset > 0; offset /= 2) s = __dadd_rn(s, __shfl_down_sync(0xffffffffu, s, offset));
        if (lane == 0) out[row] = __fadd_rn(out[row], (float)s);
    }
}
