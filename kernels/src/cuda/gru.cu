// gru.cu — one GRU time step t for all B examples, forward and backward, in the semantics of
// kernels/src/cpu/gru.rs (PyTorch's gates r, z, n). Example e's row at step t is r = e * steps + t of
// every [B * steps, *] buffer; H hidden units. Each value is the CPU's expression with its sigmoid and
// tanh (prelude.cuh), so the results are its bits. One thread per (example, unit) (n = B * H).

// gi, gh: [B steps, 3H] -> gates[r] = (r, z, n), h[r] = (1 - z) n + z h_prev[r], and
// h_prev[r + 1] = h[r] when t + 1 < steps
extern "C" __global__ void gru_step_forward(float* h, float* h_prev, float* gates, const float* gi, const float* gh,
                                            u64 steps, u64 t, u64 k, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const u64 e = i / k;
        const u64 j = i % k;
        const u64 r = e * steps + t;
        const float* xi = gi + r * 3 * k;
        const float* xh = gh + r * 3 * k;
        const float rg = mt_sigmoid(__fadd_rn(xi[j], xh[j]));
        const float zg = mt_sigmoid(__fadd_rn(xi[k + j], xh[k + j]));
        const float ng = mt_tanh(__fadd_rn(xi[2 * k + j], __fmul_rn(rg, xh[2 * k + j])));
        float* g = gates + r * 3 * k;
        g[j] = rg;
        g[k + j] = zg;
        g[2 * k + j] = ng;
        const float out = __fadd_rn(__fmul_rn(__fsub_rn(1.0f, zg), ng), __fmul_rn(zg, h_prev[r * k + j]));
        h[r * k + j] = out;
        if (t + 1 < steps) h_prev[(r + 1) * k + j] = out;
    }
}

// dy: [B steps, H], gates, gh: [B steps, 3H], h_prev: [B steps, H], carry: [B, H] -> with
// dh = dy[r] + carry[e]: dgi[r], dgh[r] (the 3H pre-activation gradients; dgh_n = r dgi_n) and
// carry[e] = z dh
extern "C" __global__ void gru_step_backward(float* dgi, float* dgh, float* carry, const float* dy,
                                             const float* gates, const float* gh, const float* h_prev, u64 steps,
                                             u64 t, u64 k, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const u64 e = i / k;
        const u64 j = i % k;
        const u64 r = e * steps + t;
        const float* g = gates + r * 3 * k;
        const float rg = g[j], zg = g[k + j], ng = g[2 * k + j];
        const float dh = __fadd_rn(dy[r * k + j], carry[i]);
        const float dn = __fmul_rn(__fmul_rn(dh, __fsub_rn(1.0f, zg)), __fsub_rn(1.0f, __fmul_rn(ng, ng)));
        const float dz = __fmul_rn(__fmul_rn(__fmul_rn(dh, __fsub_rn(h_prev[r * k + j], ng)), zg), __fsub_rn(1.0f, zg));
        const float dr = __fmul_rn(__fmul_rn(__fmul_rn(dn, gh[r * 3 * k + 2 * k + j]), rg), __fsub_rn(1.0f, rg));
        float* di = dgi + r * 3 * k;
        float* dd = dgh + r * 3 * k;
        di[j] = dr;
        di[k + j] = dz;
        di[2 * k + j] = dn;
        dd[j] = dr;
        dd[k + j] = dz;
        dd[2 * k + j] = __fmul_rn(dn, rg);
        carry[i] = __fmul_rn(dh, zg);
    }
}
