// embedding.cu — the embedding lookup, its scatter-add backward and its per-group squared gradient
// norms, in the semantics of kernels/src/cpu/embedding.rs. Shape legend: R rows (ids), D channels,
// V vocabulary, G privacy groups. The lists that keep the CPU's order (which rows add into a table row,
// a group's rows sorted by id) are built on the host from the ids' host copy (cuda/plan.rs), so every
// sum runs in the CPU's order and gives its bits.

// ids: [R], table: [V, D] -> y: [R, D] = (or += with accumulate) table[ids[r], :] (n = R * D)
extern "C" __global__ void embedding_forward(float* y, const u32* ids, const float* table, u64 d, u32 accumulate,
                                             u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        float v = table[(u64)ids[i / d] * d + i % d];
        y[i] = accumulate ? __fadd_rn(y[i], v) : v;
    }
}

// The sum of w_r dy[r, col] over rows[p], p in [begin, end), from 0 in order: one chunk of an id's rows
// (at most EMBEDDING_CHUNK, kernels/src/backend.rs)
MT_INLINE float mt_chunk_sum(const float* dy, const float* factors, const u32* example_group, const u32* rows,
                             u64 begin, u64 end, u64 d, u64 col, u64 rows_per_example) {
    float a = 0.0f;
    for (u64 p = begin; p < end; ++p) {
        u64 r = rows[p];
        float w = factors ? factors[example_group[r / rows_per_example]] : 1.0f;
        a = __fadd_rn(a, __fmul_rn(w, dy[r * d + col]));
    }
    return a;
}

// The chunks of the ids with more than one (n = P * D): chunk k is rows[chunk_begin[k] .. chunk_end[k]]
// -> partial: [P, D] = its sum per column. Each chunk runs on its own threads: an id met 50,000 times
// (padding at a large batch) is 800 short sums, not one long one.
extern "C" __global__ void embedding_backward_chunks(float* partial, const float* dy, const float* factors,
                                                     const u32* example_group, const u64* chunk_begin,
                                                     const u64* chunk_end, const u32* rows, u64 d,
                                                     u64 rows_per_example, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 k = i / d;
        partial[i] = mt_chunk_sum(dy, factors, example_group, rows, chunk_begin[k], chunk_end[k], d, i % d,
                                  rows_per_example);
    }
}

// dy: [R, D]; used: [U] the ids that occur, rows[starts[u] .. starts[u+1]] the rows of id used[u] in
// increasing order; factors: [G] (null: weight 1), example_group: [E]; slots: [U + 1] (null: every id
// has one chunk), partial: [P, D] the sums of embedding_backward_chunks ->
// dtable[used[u], :] += its chunk sums in order (n = U * D): an id of one chunk sums it here, one of
// several adds its partial rows slots[u] .. slots[u + 1]
extern "C" __global__ void embedding_backward(float* dtable, const float* dy, const float* factors,
                                              const u32* example_group, const u32* used, const u64* starts,
                                              const u32* rows, const u64* slots, const float* partial, u64 d,
                                              u64 rows_per_example, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 u = i / d;
        u64 col = i % d;
        u64 at = (u64)used[u] * d + col;
        float t = dtable[at];
        if (slots && slots[u + 1] > slots[u]) {
            for (u64 k = slots[u]; k < slots[u + 1]; ++k) t = __fadd_rn(t, partial[k * d + col]);
        } else {
            t = __fadd_rn(t, mt_chunk_sum(dy, factors, example_group, rows, starts[u], starts[u + 1], d, col,
                                          rows_per_example));
        }
        dtable[at] = t;
    }
}

// ids: [R], dy: [R, D], offsets: [G + 1] (examples), order: [R] each group's rows sorted by (id, row) ->
// out: [G] += sum over the group's ids of ||sum of its rows' dy||^2. One warp per group: for each id
// (in order) the lanes take its columns, each column's sum over the id's rows in the CPU's order (f32),
// the squares summed in f64 per lane and then across the warp by a fixed shuffle tree; lane 0 adds the
// ids' sums in order. The f64 sum runs in another order than the CPU's one pass over the columns, so
// the result agrees with the CPU's to one f32 ulp (as add_row_dots). blockDim.x a multiple of 32.
extern "C" __global__ void embedding_group_sq_norms(float* out, const u32* ids, const float* dy, const u64* offsets,
                                                    const u32* order, u64 d, u64 rows_per_example, u64 g) {
    const u32 lane = threadIdx.x % 32;
    const u64 warps = mt_stride() / 32;
    for (u64 grp = mt_first() / 32; grp < g; grp += warps) {
        const u64 end = offsets[grp + 1] * rows_per_example;
        double total = 0.0;
        u64 i = offsets[grp] * rows_per_example;
        while (i < end) {
            const u32 id = ids[order[i]];
            u64 run = i;
            while (run < end && ids[order[run]] == id) ++run;
            double s = -0.0;
            for (u64 col = lane; col < d; col += 32) {
                float a = 0.0f;
                for (u64 p = i; p < run; ++p) a = __fadd_rn(a, dy[(u64)order[p] * d + col]);
                s = __dadd_rn(s, __dmul_rn((double)a, (double)a));
            }
            for (u32 offset = 16; offset > 0; offset /= 2) s = __dadd_rn(s, __shfl_down_sync(0xffffffffu, s, offset));
            total = __dadd_rn(total, s);
            i = run;
        }
        if (lane == 0) out[grp] = __fadd_rn(out[grp], (float)total);
    }
}
