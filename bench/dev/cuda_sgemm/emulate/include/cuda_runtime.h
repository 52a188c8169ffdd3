// A stand-in for <cuda_runtime.h> used ONLY by the CPU emulator (emulate/emulate_check.cpp): just
// enough of CUDA C++ for the ladder's kernels 01-08 to compile as host C++ and run, one host
// thread per CUDA thread, one block at a time. It checks indexing, bounds handling, tiling and
// barrier placement on small shapes; it says nothing about speed, warps, banks or memory ordering
// beyond __syncthreads. Never on the include path of the real (nvcc) build.
#pragma once
#include <barrier>
#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so a function-static array is "per block"
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "no error"; }

namespace emu {
inline thread_local dim3 tl_thread, tl_block;
inline dim3 g_block_dim, g_grid_dim;
inline std::barrier<>* g_barrier = nullptr;
}  // namespace emu
#define threadIdx (::emu::tl_thread)
#define blockIdx (::emu::tl_block)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)

inline void __syncthreads() { emu::g_barrier->arrive_and_wait(); }

namespace emu {
// Runs body() as every thread of every block of the grid; blocks one after another.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  g_grid_dim = grid;
  g_block_dim = block;
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> bar(nt);
        g_barrier = &bar;
        std::vector<std::thread> threads;
        threads.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          threads.emplace_back([&, t] {
            tl_block = dim3(bx, by, bz);
            tl_thread = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            body();
            bar.arrive_and_drop();  // an exited thread no longer counts at later barriers
          });
        for (std::thread& th : threads) th.join();
      }
}
}  // namespace emu

#define LADDER_LAUNCH(kernel, grid, block, stream, ...) \
  ((void)(stream), ::emu::launch(dim3(grid), dim3(block), [&] { kernel(__VA_ARGS__); }))
