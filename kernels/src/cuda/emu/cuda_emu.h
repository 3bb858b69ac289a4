// cuda_emu.h — runs the backend's .cu kernels on the CPU as C++20, to check them without a GPU.
//
// Each CUDA thread of a block is a std::thread; the blocks of a grid run one after another, so a
// function-static array is the block's __shared__ memory. __syncthreads is a std::barrier of the block,
// a warp shuffle an exchange through a per-warp slot array between two barriers of the warp. Real
// threads make the sanitizers meaningful: ThreadSanitizer reports a missing barrier as a data race on
// the shared array, AddressSanitizer a missing bounds guard as an overflow of the exactly sized buffer.
// The float intrinsics are the IEEE operations they name; build with -ffp-contract=off (no FMA
// contraction), as the GPU build is with --fmad=false.
#pragma once
#include <algorithm>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 { unsigned int x, y, z; };

namespace emu {
inline dim3 grid_dim{1, 1, 1}, block_dim{1, 1, 1};
inline thread_local dim3 thread_idx{0, 0, 0}, block_idx{0, 0, 0};
struct Warp {
    explicit Warp(std::ptrdiff_t lanes) : bar(lanes) {}
    std::barrier<> bar;
    alignas(8) unsigned char slot[32][8];
};
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<Warp>> warps;

// runs kernel(args...) on a grid of `grid` blocks of `block` threads (1-D, as the backend launches)
template <class... A, class... V>
void launch(void (*kernel)(A...), unsigned grid, unsigned block, V... args) {
    grid_dim = {grid, 1, 1};
    block_dim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> bar(block);
        block_barrier = &bar;
        warps.clear();
        for (unsigned w = 0; w < (block + 31) / 32; ++w)
            warps.push_back(std::make_unique<Warp>(std::min(32u, block - 32 * w)));
        std::vector<std::jthread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([=] {
                thread_idx = {t, 0, 0};
                block_idx = {b, 0, 0};
                kernel(args...);
            });
    }
}
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

// the value of lane + delta of this warp, or this lane's own when that lane is past the warp
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta) {
    static_assert(sizeof(T) <= 8);
    unsigned lane = threadIdx.x % 32;
    emu::Warp& w = *emu::warps[threadIdx.x / 32];
    std::memcpy(w.slot[lane], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T out = v;
    if (lane + delta < 32 && 32 * (threadIdx.x / 32) + lane + delta < blockDim.x)
        std::memcpy(&out, w.slot[lane + delta], sizeof(T));
    w.bar.arrive_and_wait();
    return out;
}

// the value of lane ^ mask of this warp, or this lane's own when that lane is past the block
template <class T>
T __shfl_xor_sync(unsigned, T v, unsigned mask) {
    static_assert(sizeof(T) <= 8);
    unsigned lane = threadIdx.x % 32;
    unsigned src = (lane ^ mask) % 32;
    emu::Warp& w = *emu::warps[threadIdx.x / 32];
    std::memcpy(w.slot[lane], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T out = v;
    if (32 * (threadIdx.x / 32) + src < blockDim.x) std::memcpy(&out, w.slot[src], sizeof(T));
    w.bar.arrive_and_wait();
    return out;
}

// the lanes of this warp wait for each other (and see each other's writes)
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warps[threadIdx.x / 32]->bar.arrive_and_wait(); }

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
// copysignf, fabsf, floorf, fmaxf, rint and the double rint, fabs, fmax, copysign are the C library's
// (<cmath> declares them): all exact operations
using std::isnan;
