// noise.cu — DP-SGD's Gaussian noise: kernels/NOISE.md, bit for bit (the reference is cpu/rng.rs with
// cpu/chacha.rs and cpu/math.rs).
//
// buf: [N] = scale * grid * round_half_even((buf + std z) / grid), computed in f64 and rounded to f32,
// one standard normal z per element from the keyed ChaCha20 stream; with std == 0, buf = scale * buf.
//
// One block of 256 threads per chunk of 4096 elements (16 batches of 256; grid-stride over chunks):
// 1. thread t makes ChaCha20 block 256c + t, i.e. lane l = t % 16 of batch k = t / 16, into shared memory;
// 2. the pairs whose radius word is below 2^24 draw an extension word from the chunk's reserve stream in
//    order of need (batch, then w, then l): thread t owns pairs 8t .. 8t+8 of that order, and an
//    exclusive prefix sum over the threads' counts gives each such pair its index j in the reserve;
// 3. each pair makes its two normals (Box-Muller with the CPU's polynomials) and snaps its two elements.
// Element i depends on (key, stream, i, buf[i], std, scale, grid) only.

// Layout shared with the Rust side (cuda/plan.rs `NoiseParams`, #[repr(C)]).
struct NoiseParams {
    u32 key[8];        // the 32-byte key as little-endian words
    u64 stream;        // the stream id (ChaCha20's 64-bit nonce)
    u64 n;             // elements in buf
    float std_dev;     // >= 0
    float scale;
    double inv_grid;   // 1 / grid, exact (grid is a power of two)
    double grid_scale; // grid * scale, exact
};

#define MT_ROTL(v, s) (((v) << (s)) | ((v) >> (32 - (s))))
#define MT_QUARTER(a, b, c, d)                                                                               \
    a += b; d ^= a; d = MT_ROTL(d, 16);                                                                      \
    c += d; b ^= c; b = MT_ROTL(b, 12);                                                                      \
    a += b; d ^= a; d = MT_ROTL(d, 8);                                                                       \
    c += d; b ^= c; b = MT_ROTL(b, 7);

// word `word` of ChaCha20 block `counter` of (key, stream), Bernstein's layout (cpu/chacha.rs)
MT_INLINE void mt_chacha_block(const u32* key, u64 stream, u64 counter, u32* out) {
    u32 init[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u, key[0], key[1], key[2], key[3],
                    key[4], key[5], key[6], key[7], (u32)counter, (u32)(counter >> 32), (u32)stream,
                    (u32)(stream >> 32)};
    u32 x0 = init[0], x1 = init[1], x2 = init[2], x3 = init[3], x4 = init[4], x5 = init[5], x6 = init[6],
        x7 = init[7], x8 = init[8], x9 = init[9], x10 = init[10], x11 = init[11], x12 = init[12],
        x13 = init[13], x14 = init[14], x15 = init[15];
    for (int round = 0; round < 10; ++round) {
        MT_QUARTER(x0, x4, x8, x12)
        MT_QUARTER(x1, x5, x9, x13)
        MT_QUARTER(x2, x6, x10, x14)
        MT_QUARTER(x3, x7, x11, x15)
        MT_QUARTER(x0, x5, x10, x15)
        MT_QUARTER(x1, x6, x11, x12)
        MT_QUARTER(x2, x7, x8, x13)
        MT_QUARTER(x3, x4, x9, x14)
    }
    out[0] = x0 + init[0];
    out[1] = x1 + init[1];
    out[2] = x2 + init[2];
    out[3] = x3 + init[3];
    out[4] = x4 + init[4];
    out[5] = x5 + init[5];
    out[6] = x6 + init[6];
    out[7] = x7 + init[7];
    out[8] = x8 + init[8];
    out[9] = x9 + init[9];
    out[10] = x10 + init[10];
    out[11] = x11 + init[11];
    out[12] = x12 + init[12];
    out[13] = x13 + init[13];
    out[14] = x14 + init[14];
    out[15] = x15 + init[15];
}

// the j-th extension word of chunk c: word j % 256 (word w of block base + l, j % 256 = 16 w + l) of the
// reserve batch at base = 2^62 + (j / 256) 2^50 + 16 c
MT_INLINE u32 mt_reserve_word(const NoiseParams& p, u64 chunk, u32 j) {
    u64 base = (1ull << 62) + ((u64)(j / 256) << 50) + chunk * 16;
    u32 i = j % 256;
    u32 block[16];
    mt_chacha_block(p.key, p.stream, base + i % 16, block);
    // select rather than index, so that `block` stays in registers (no local memory)
    u32 word = 0;
#pragma unroll
    for (u32 w = 0; w < 16; ++w) word = w == i / 16 ? block[w] : word;
    return word;
}

// snap x + std z to the grid, then scale (cpu/rng.rs `snap`): f64, each operation rounded once
MT_INLINE float mt_snap(float x, float z, const NoiseParams& p) {
    double v = __dadd_rn((double)x, __dmul_rn((double)p.std_dev, (double)z));
    return (float)__dmul_rn(rint(__dmul_rn(v, p.inv_grid)), p.grid_scale);
}

// buf: [N] (= noised and snapped in place), p: see NoiseParams; blockDim.x must be 256
extern "C" __global__ void add_normal(float* buf, NoiseParams p) {
    __shared__ u32 words[16][16][16]; // [batch k][word w][lane l]: word w of block 256c + 16k + l
    __shared__ u32 counts[256];
    const u32 t = threadIdx.x;
    const u64 chunks = (p.n + 4095) / 4096;
    if (!(p.std_dev > 0.0f)) {
        // no draw and no snapping: buf = scale * buf
        for (u64 i = mt_first(); i < p.n; i += mt_stride()) buf[i] = __fmul_rn(buf[i], p.scale);
        return;
    }
    const float TWO_M32 = 1.0f / 4294967296.0f;
    const float TWO_M24 = 1.0f / 16777216.0f;
    const u32 k = t / 16;             // the batch of this thread's ChaCha block and of its pairs
    const u32 w = (t % 16) * 8 / 16;  // the radius word of its pairs (their angle word is 8 + w)
    const u32 l0 = (t % 16) * 8 % 16; // the lane of its first pair
    for (u64 c = blockIdx.x; c < chunks; c += gridDim.x) {
        u32 block[16];
        mt_chacha_block(p.key, p.stream, c * 256 + t, block);
#pragma unroll
        for (int i = 0; i < 16; ++i) words[k][i][t % 16] = block[i];
        __syncthreads();

        u32 count = 0;
        for (u32 i = 0; i < 8; ++i) count += words[k][w][l0 + i] < (1u << 24) ? 1u : 0u;
        counts[t] = count;
        __syncthreads();
        for (u32 offset = 1; offset < 256; offset <<= 1) {
            u32 left = t >= offset ? counts[t - offset] : 0u;
            __syncthreads();
            counts[t] += left;
            __syncthreads();
        }
        u32 j = counts[t] - count; // the reserve index of this thread's first extension

        for (u32 i = 0; i < 8; ++i) {
            u32 radius_word = words[k][w][l0 + i];
            u32 angle_word = words[k][8 + w][l0 + i];
            float u;
            if (radius_word >= (1u << 24)) {
                u = __fmul_rn(__fadd_rn((float)radius_word, 0.5f), TWO_M32);
            } else {
                u32 lo = mt_reserve_word(p, c, j++);
                u = __fmul_rn(__fadd_rn((float)radius_word, __fmul_rn(__fadd_rn((float)lo, 0.5f), TWO_M32)), TWO_M32);
            }
            float r = __fsqrt_rn(fmaxf(__fmul_rn(-2.0f, mt_ln(u)), 0.0f));
            float cos_v, sin_v;
            mt_cos_sin_turns(__fmul_rn((float)(angle_word >> 8), TWO_M24), &cos_v, &sin_v);
            u64 first = c * 4096 + k * 256 + w * 16 + l0 + i; // the pair's cosine element; + 128: its sine
            if (first < p.n) buf[first] = mt_snap(buf[first], __fmul_rn(r, cos_v), p);
            if (first + 128 < p.n) buf[first + 128] = mt_snap(buf[first + 128], __fmul_rn(r, sin_v), p);
        }
        __syncthreads(); // words and counts are rewritten by the next chunk
    }
}
