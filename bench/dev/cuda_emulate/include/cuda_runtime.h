// A stand-in for <cuda_runtime.h> used ONLY by the CPU emulators (never on the include path of a
// real nvcc build): enough of CUDA C++ for the library's kernels (cuda/*.cu, rewritten by
// bench/dev/cuda_emulate/preprocess.py) and the SGEMM ladder's kernels 01-08 and 10
// (bench/dev/cuda_sgemm/emulate/) to compile as host C++ (g++ -std=c++20) and run on the CPU.
//
// Execution model: blocks run one after another; every CUDA thread of the running block is one
// host thread (a pool of std::threads reused across blocks). __shared__ arrays are
// function-statics (one block at a time, so "per block"); when declared through
// EMU_SHARED_POISON (preprocess.py does this for cuda/) they are filled with 0xFF bytes (float
// NaN, int -1) at the start of every block, so reading shared memory that no thread of this
// block wrote shows up as NaN / garbage.
//
// What it checks: indexing, bounds (under ASan: device memory is host memory), tiling,
// grid-stride loops, __syncthreads placement (all threads of a block must reach the same
// __syncthreads call site; exited threads count as arrived, as on the GPU), warp-synchronous
// collectives (__shfl_sync, __shfl_xor_sync, __match_any_sync, __syncwarp, and the TF32
// mma.sync of cuda/tensor_cores.cuh, with its fragment layout): each one is a
// rendezvous of exactly the lanes named in the mask, which must all call the same collective with
// the same mask (at the same call site, except __syncwarp); a mask naming a lane that does not
// exist (partial last warp) or has exited, a lane calling with a mask that leaves itself out, a
// shuffle from a lane outside the mask, and deadlocks (every live thread waiting) are reported
// as launch failures (cudaGetLastError), like a kernel fault. Launch configurations are checked
// against the CUDA limits (block <= 1024 threads, grid.y/z <= 65535, ...). Built with
// ThreadSanitizer instead of ASan, it also reports data races between the threads of a block
// (see kRaceDetector).
//
// What it cannot check: speed, occupancy, register or shared-memory limits of static __shared__
// arrays, bank conflicts, coalescing, the GPU memory model beyond barrier-separated phases
// (blocks run sequentially, so inter-block races and missing atomics are invisible), lanes of one
// warp running ahead of each other between collectives (real warps are lock-step there, here they
// are free threads, which is stricter, not looser), several disjoint sub-warp groups using
// collectives at the same time (reported as divergence), and the precision of device math
// (expf, __expf, ... are the host libm's; no FMA contraction unless the code calls fmaf).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <source_location>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

// Built with ThreadSanitizer (see emu::kRaceDetector)?
#if defined(__SANITIZE_THREAD__)
#define EMU_RACE_DETECTOR 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EMU_RACE_DETECTOR 1
#endif
#endif
#ifdef EMU_RACE_DETECTOR
extern "C" {  // ThreadSanitizer's annotation interface (libtsan)
void AnnotateIgnoreSyncBegin(const char* file, int line);
void AnnotateIgnoreSyncEnd(const char* file, int line);
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif

// Code that must differ under emulation (inline PTX) tests this.
#define NNCORE_CUDA_EMULATOR 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static  // one block runs at a time, so a function-static array is "per block"

// ---- vector types ----------------------------------------------------------------------------
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// ---- device functions ------------------------------------------------------------------------
// Integer min/max as CUDA's device overloads (same-type arguments only: mixed types fail to
// compile here, which is stricter than CUDA's promotions). Float math (expf, logf, fmaxf, fmaf,
// tanhf, sqrtf, isnan ...) is the host's <cmath>.
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
inline T min(T a, T b) { return a < b ? a : b; }
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
inline T max(T a, T b) { return a < b ? b : a; }
using std::isinf;
using std::isnan;
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// ---- runtime API (what the kernels' translation units call) ----------------------------------
struct CUstream_st;
using cudaStream_t = CUstream_st*;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75 };

namespace emu {
inline cudaError_t g_last_error = cudaSuccess;
inline std::string g_error_detail;  // message of the last launch failure
inline int g_sm_count = 4;          // what cudaDeviceGetAttribute reports (sgemm's tile choice)
// Grid caps that preprocess.py substitutes for cuda/'s hard-coded limits (common.cuh kMaxBlocks
// and bias.cu's grid.y cap): any value >= 1 must give the same results (grid-stride loops), so
// the harness runs with the real caps and with tiny ones.
inline int64_t g_max_blocks = 65535;
inline int64_t g_max_grid_y = 65535;
inline bool g_force_int64 = false;  // fits_int32() answers false: the int64-index kernels run
inline int64_t g_min_slice_k = 256;  // sgemm's kMinSliceK (K per split-K slice at least)
inline long g_launches = 0;
}  // namespace emu

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::g_last_error; }
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration:
    case cudaErrorLaunchFailure: return emu::g_error_detail.c_str();
    case cudaErrorMemoryAllocation: return "out of memory";
    default: return "invalid value";
  }
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  if (a == cudaDevAttrMultiProcessorCount) *v = emu::g_sm_count;
  else if (a == cudaDevAttrComputeCapabilityMajor) *v = 9;  // an sm_90 (TF32 tensor cores)
  else return cudaErrorInvalidValue;
  return cudaSuccess;
}

// ---- execution -------------------------------------------------------------------------------
namespace emu {

struct Aborted {};  // unwinds the other threads of a block after a failure

struct Warp {
  std::condition_variable cv;
  unsigned present = 0;  // lanes that exist (a partial last warp has fewer than 32)
  unsigned exited = 0;
  bool open = false;     // a collective is gathering its lanes
  int op = 0;
  unsigned mask = 0, arrived = 0;
  int pending = 0;       // lanes yet to pick up the last completed collective's result
  uint64_t gen = 0;
  const char* file = "";
  unsigned line = 0;
  uint64_t in[32] = {}, out[32] = {};
  char sync[2] = {};     // TSan sync objects, by generation parity (release_cuda)
};

// How the threads of a block take turns. kFree: all run at once (the OS schedules them).
// kAscending / kDescending: one at a time, deterministically: the running thread keeps going
// until it must wait (barrier, warp collective) or exits, then the lowest (highest) numbered
// thread that can run takes over. So some threads run far ahead of others between barriers, in
// both directions, which turns most missing-barrier races (a read before the write it needs, or
// a write before an earlier read) into wrong results that show every time, not by chance.
enum Schedule { kFree = 0, kAscending, kDescending };
inline Schedule g_schedule = kFree;

// Built with ThreadSanitizer (run.sh SANITIZER=thread), every block runs kFree: a serialized
// schedule hands the turn over through the block's mutex, which orders one thread's accesses
// before the next one's and would hide from TSan the races it is there to find. TSan then reports
// any two accesses to one address, at least one a write, by threads of a block that no
// __syncthreads or warp collective orders: compute-sanitizer racecheck's hazards in shared memory,
// and the same in global memory.
#ifdef EMU_RACE_DETECTOR
inline constexpr bool kRaceDetector = true;
// The emulator's bookkeeping (the block's one mutex, condition variables) would order for TSan
// everything a thread did before it took the mutex before everything the next taker does after,
// far more than a GPU orders. So while a thread is inside the emulator, TSan ignores its
// synchronization and its memory accesses (Internal), and the barrier and the warp collectives
// state what CUDA guarantees (release_cuda / acquire_cuda): each participant releases a sync
// object on arrival and acquires it once all have arrived.
struct Internal {
  Internal() {
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~Internal() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
    AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
  }
  Internal(const Internal&) = delete;
  Internal& operator=(const Internal&) = delete;
};
inline void release_cuda(void* sync) {  // inside Internal
  AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
  __tsan_release(sync);
  AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
}
inline void acquire_cuda(void* sync) {  // inside Internal
  AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
  __tsan_acquire(sync);
  AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
}
#else
inline constexpr bool kRaceDetector = false;
struct Internal {
  Internal() {}  // user-provided: a guard variable, not an unused one
};
inline void release_cuda(void*) {}
inline void acquire_cuda(void*) {}
#endif
inline std::atomic<long> g_race_reports{0};  // reports TSan has printed (0 without TSan)

struct Block {
  std::mutex mu;
  std::condition_variable cv;  // __syncthreads waiters (kFree)
  Schedule schedule = kFree;
  unsigned running = 0;        // serialized schedules: the thread whose turn it is
  std::unique_ptr<std::condition_variable[]> turn;    // serialized: one per thread
  std::unique_ptr<std::function<bool()>[]> waits_for;  // serialized: what a waiting thread needs
  std::unique_ptr<bool[]> exited;
  unsigned nthreads = 0, live = 0, blocked = 0;
  unsigned bar_arrived = 0;
  uint64_t bar_gen = 0;
  char bar_sync[2] = {};       // TSan sync objects, by barrier generation parity (release_cuda)
  const char* bar_file = "";
  unsigned bar_line = 0;
  std::unique_ptr<Warp[]> warps;
  bool aborted = false;
  std::string error;
};

inline thread_local dim3 tl_thread, tl_block;
inline thread_local unsigned tl_tid = 0;
inline dim3 g_block_dim, g_grid_dim;
inline Block* g_blk = nullptr;
inline const char* g_kernel = "";

inline std::string where() {
  char buf[160];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", tl_block.x, tl_block.y,
                tl_block.z, tl_thread.x, tl_thread.y, tl_thread.z);
  return buf;
}
inline std::string loc_str(const char* file, unsigned line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

// Records the first failure, wakes every waiter (they throw Aborted) and unwinds this thread.
// Caller holds b.mu.
[[noreturn]] inline void fail(Block& b, const std::string& what) {
  if (!b.aborted) {
    b.aborted = true;
    b.error = what + " [" + where() + "]";
  }
  b.cv.notify_all();
  for (unsigned w = 0; w < (b.nthreads + 31) / 32; ++w) b.warps[w].cv.notify_all();
  if (b.schedule != kFree)
    for (unsigned t = 0; t < b.nthreads; ++t) b.turn[t].notify_all();
  throw Aborted{};
}

// A failure a lane finds after its collective completed (it no longer holds the block's lock):
// recorded as fail() does, then this thread unwinds.
[[noreturn]] inline void fail_after_collective(const std::string& what) {
  {
    Internal internal;
    std::lock_guard<std::mutex> lk(g_blk->mu);
    try {
      fail(*g_blk, what);
    } catch (const Aborted&) {
    }
  }
  throw Aborted{};
}

// Serialized schedules: gives the turn to the first thread (in schedule order) that can run;
// with none left while some have not exited, the block is deadlocked. Caller holds b.mu.
inline void pass_turn(Block& b, const std::string& what) {
  const unsigned n = b.nthreads;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned t = b.schedule == kAscending ? i : n - 1 - i;
    if (!b.exited[t] && (!b.waits_for[t] || b.waits_for[t]())) {
      b.running = t;
      b.turn[t].notify_one();
      return;
    }
  }
  if (b.live > 0) fail(b, "deadlock: no thread can run; this one " + what);
}

// Waits (holding lk) until done() or the block aborted; detects deadlock (every live thread
// waiting on something no one can provide) and, as a backstop, a long stall.
template <class Done>
inline void wait_for(Block& b, std::unique_lock<std::mutex>& lk, std::condition_variable& cv,
                     Done done, const std::string& what, bool counted = true) {
  if (b.schedule != kFree) {
    const unsigned me = tl_tid;
    b.waits_for[me] = done;
    pass_turn(b, "waits in " + what);
    int waited = 0;
    while (!b.aborted && b.running != me)
      if (b.turn[me].wait_for(lk, std::chrono::seconds(1)) == std::cv_status::timeout &&
          ++waited >= 120)
        fail(b, "no progress for 120 s in " + what);
    b.waits_for[me] = nullptr;
    if (b.aborted) throw Aborted{};
    return;
  }
  if (!counted) {
    while (!done() && !b.aborted) cv.wait(lk);
    if (b.aborted && !done()) throw Aborted{};
    return;
  }
  ++b.blocked;
  if (b.blocked == b.live) fail(b, "deadlock: every live thread is waiting; this one in " + what);
  int waited = 0;
  while (!done() && !b.aborted) {
    if (cv.wait_for(lk, std::chrono::seconds(1)) == std::cv_status::timeout && ++waited >= 120)
      fail(b, "no progress for 120 s in " + what);
  }
  if (b.aborted && !done()) throw Aborted{};
}

inline void syncthreads(const std::source_location& loc) {
  Block& b = *g_blk;
  Internal internal;
  std::unique_lock<std::mutex> lk(b.mu);
  if (b.aborted) throw Aborted{};
  if (b.bar_arrived == 0) {
    b.bar_file = loc.file_name();
    b.bar_line = loc.line();
  } else if (b.bar_line != loc.line() || std::strcmp(b.bar_file, loc.file_name()) != 0) {
    fail(b, "divergent __syncthreads: this thread at " + loc_str(loc.file_name(), loc.line()) +
                ", " + std::to_string(b.bar_arrived) + " other(s) wait at " +
                loc_str(b.bar_file, b.bar_line));
  }
  // This thread's accesses before the barrier happen before every thread's accesses after it.
  void* sync = &b.bar_sync[b.bar_gen & 1];
  release_cuda(sync);
  if (++b.bar_arrived == b.live) {
    b.blocked -= b.bar_arrived - 1;
    b.bar_arrived = 0;
    ++b.bar_gen;
    b.cv.notify_all();
    acquire_cuda(sync);
    return;
  }
  const uint64_t gen = b.bar_gen;
  wait_for(b, lk, b.cv, [&] { return b.bar_gen != gen; },
           "__syncthreads at " + loc_str(loc.file_name(), loc.line()));
  acquire_cuda(sync);
}

enum Op { kSyncwarp = 1, kShfl, kMatchAny, kMma };
inline const char* op_name(int op) {
  return op == kSyncwarp ? "__syncwarp"
         : op == kShfl   ? "__shfl*_sync"
         : op == kMma    ? "mma.sync"
                         : "__match_any_sync";
}

// One warp collective: the lanes named in `mask` meet, each contributing `value`;
// compute(in, out, mask) fills every participant's result.
template <class Compute>
inline uint64_t warp_collective(int op, unsigned mask, uint64_t value,
                                const std::source_location& loc, Compute compute) {
  Block& b = *g_blk;
  const unsigned lane = tl_tid & 31u, bit = 1u << lane;
  Warp& w = b.warps[tl_tid >> 5];
  Internal internal;
  std::unique_lock<std::mutex> lk(b.mu);
  if (b.aborted) throw Aborted{};
  const std::string here = std::string(op_name(op)) + " at " + loc_str(loc.file_name(), loc.line());
  char m[64];
  std::snprintf(m, sizeof m, " (mask 0x%08x, warp has lanes 0x%08x)", mask, w.present);
  if (!(mask & bit)) fail(b, here + ": calling lane " + std::to_string(lane) + " not in mask" + m);
  if (mask & ~w.present) fail(b, here + ": mask names lanes that do not exist (partial warp)" + m);
  if (mask & w.exited) fail(b, here + ": mask names lanes that have exited" + m);
  // The previous collective's lanes must have picked up their results first.
  if (w.pending > 0) wait_for(b, lk, w.cv, [&] { return w.pending == 0; }, here, false);
  if (b.aborted) throw Aborted{};
  if (!w.open) {
    w.open = true;
    w.op = op;
    w.mask = mask;
    w.arrived = 0;
    w.file = loc.file_name();
    w.line = loc.line();
  } else if (w.op != op || w.mask != mask ||
             (op != kSyncwarp && (w.line != loc.line() || std::strcmp(w.file, loc.file_name())))) {
    char other[64];
    std::snprintf(other, sizeof other, " (mask 0x%08x)", w.mask);
    fail(b, "divergent warp collective: lane " + std::to_string(lane) + " in " + here + m +
                ", lanes already waiting in " + op_name(w.op) + " at " + loc_str(w.file, w.line) +
                other);
  }
  // The lane's accesses before the collective happen before every participant's after it. (The
  // next collective waits until every lane has picked up its result, after its acquire.)
  void* sync = &w.sync[w.gen & 1];
  release_cuda(sync);
  w.in[lane] = value;
  w.arrived |= bit;
  if (w.arrived == mask) {
    compute(w.in, w.out, mask);
    w.open = false;
    const int others = __builtin_popcount(mask) - 1;
    w.pending = others;
    b.blocked -= others;
    ++w.gen;
    w.cv.notify_all();
    acquire_cuda(sync);
    return w.out[lane];
  }
  const uint64_t gen = w.gen;
  wait_for(b, lk, w.cv, [&] { return w.gen != gen; }, here);
  acquire_cuda(sync);
  const uint64_t r = w.out[lane];
  if (--w.pending == 0) w.cv.notify_all();
  return r;
}

// Called when a thread's kernel body returns (or unwinds).
inline void thread_exit() {
  Block& b = *g_blk;
  Internal internal;
  std::lock_guard<std::mutex> lk(b.mu);
  Warp& w = b.warps[tl_tid >> 5];
  const unsigned bit = 1u << (tl_tid & 31u);
  w.exited |= bit;
  --b.live;
  if (b.schedule != kFree) b.exited[tl_tid] = true;
  if (b.aborted) return;
  try {
    if (w.open && (w.mask & bit))
      fail(b, std::string("lane exited while its warp waits in ") + op_name(w.op) + " at " +
                  loc_str(w.file, w.line));
    if (b.bar_arrived > 0 && b.bar_arrived == b.live) {  // the exited thread no longer counts
      b.blocked -= b.bar_arrived;
      b.bar_arrived = 0;
      ++b.bar_gen;
      b.cv.notify_all();
    }
    if (b.schedule != kFree) {
      pass_turn(b, "exited, and every remaining thread waits (barrier or warp collective that "
                   "the exited thread never reached)");
    } else if (b.live > 0 && b.blocked == b.live) {
      fail(b, "deadlock: a thread exited and every remaining thread waits (barrier or warp "
              "collective that the exited thread never reached)");
    }
  } catch (const Aborted&) {
  }
}

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a word <= 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

// Shuffle: lane l reads the value of src(l) (which must be in the mask).
template <class T, class Src>
inline T shuffle(unsigned mask, T var, const std::source_location& loc, Src src) {
  unsigned bad_lane = 32;
  const uint64_t r = warp_collective(kShfl, mask, to_bits(var), loc,
                                     [&](const uint64_t* in, uint64_t* out, unsigned m) {
                                       for (unsigned l = 0; l < 32; ++l)
                                         if (m >> l & 1u) {
                                           const unsigned s = src(l);
                                           if (!(m >> s & 1u)) bad_lane = s;
                                           out[l] = in[s];
                                         }
                                     });
  if (bad_lane < 32)
    fail_after_collective("__shfl*_sync at " + loc_str(loc.file_name(), loc.line()) +
                          " reads lane " + std::to_string(bad_lane) + ", which is not in the mask");
  return from_bits<T>(r);
}

// ---- PTX instructions of the TF32 tensor-core GEMM (the ptx_* of cuda/tensor_cores.cuh) --------

// cvt.rna.tf32.f32: keeps the top 19 bits (sign, 8 exponent, 10 mantissa bits), rounding the 13
// dropped ones to nearest, ties away from zero; a NaN stays a NaN, an overflow becomes infinity.
inline uint32_t cvt_rna_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7F800000u) == 0x7F800000u) return (u & 0x7FFFFFu) ? 0x7FFFE000u : u;
  return (u + 0x1000u) & ~0x1FFFu;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, D = A * B + C with C = D in place: a
// collective of all 32 lanes (all must call it, at the same site). Lane l = 4 * g + t holds, as the
// PTX ISA lays the fragments out:
//   A (16 x 8):  a[0] = A[g][t]   a[1] = A[g+8][t]   a[2] = A[g][t+4]   a[3] = A[g+8][t+4]
//   B (8 x 8):   b[0] = B[t][g]   b[1] = B[t+4][g]
//   C, D (16 x 8): d[0] = D[g][2t]  d[1] = D[g][2t+1]  d[2] = D[g+8][2t]  d[3] = D[g+8][2t+1]
// Products of TF32 values are exact in float64, and each output is rounded to float once (the
// GPU's accumulation order and rounding are its own: results agree to FP32 accumulation error).
// An operand with any of its low 13 bits set is not TF32 (a missing cvt) and fails the launch.
struct MmaOperands {
  const uint32_t* a;
  const uint32_t* b;
  float* d;
};
inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const std::source_location& loc) {
  const MmaOperands mine{a, b, d};
  int not_tf32_lane = -1;
  warp_collective(kMma, 0xffffffffu, to_bits(&mine), loc,
                  [&](const uint64_t* in, uint64_t*, unsigned) {
                    float A[16][8], B[8][8], C[16][8];
                    for (unsigned l = 0; l < 32; ++l) {
                      const MmaOperands& o = *from_bits<const MmaOperands*>(in[l]);
                      const unsigned g = l / 4, t = l % 4;
                      for (int r = 0; r < 4; ++r)
                        if (o.a[r] & 0x1FFFu) not_tf32_lane = int(l);
                      for (int r = 0; r < 2; ++r)
                        if (o.b[r] & 0x1FFFu) not_tf32_lane = int(l);
                      A[g][t] = __uint_as_float(o.a[0]);
                      A[g + 8][t] = __uint_as_float(o.a[1]);
                      A[g][t + 4] = __uint_as_float(o.a[2]);
                      A[g + 8][t + 4] = __uint_as_float(o.a[3]);
                      B[t][g] = __uint_as_float(o.b[0]);
                      B[t + 4][g] = __uint_as_float(o.b[1]);
                      C[g][2 * t] = o.d[0];
                      C[g][2 * t + 1] = o.d[1];
                      C[g + 8][2 * t] = o.d[2];
                      C[g + 8][2 * t + 1] = o.d[3];
                    }
                    for (unsigned l = 0; l < 32; ++l) {
                      const MmaOperands& o = *from_bits<const MmaOperands*>(in[l]);
                      const unsigned g = l / 4, t = l % 4;
                      for (int r = 0; r < 4; ++r) {
                        const unsigned row = g + 8 * (r / 2), col = 2 * t + r % 2;
                        double acc = C[row][col];
                        for (int k = 0; k < 8; ++k) acc += double(A[row][k]) * double(B[k][col]);
                        o.d[r] = float(acc);
                      }
                    }
                  });
  if (not_tf32_lane >= 0)
    fail_after_collective("mma.sync (tf32) at " + loc_str(loc.file_name(), loc.line()) +
                          ": lane " + std::to_string(not_tf32_lane) +
                          " passed an operand with low mantissa bits set (not rounded to TF32)");
}

// __shared__ arrays declared through EMU_SHARED_POISON register here: filled with 0xFF at first
// use and at the start of every later block.
struct SharedPoison {
  static std::vector<std::pair<void*, size_t>>& all() {
    static std::vector<std::pair<void*, size_t>> v;
    return v;
  }
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  SharedPoison(void* p, size_t n) {
    std::memset(p, 0xFF, n);
    std::lock_guard<std::mutex> lk(mu());
    all().emplace_back(p, n);
  }
  static void poison_all() {
    std::lock_guard<std::mutex> lk(mu());
    for (auto& [p, n] : all()) std::memset(p, 0xFF, n);
  }
};

inline bool config_ok(dim3 grid, dim3 block, size_t smem, std::string& why) {
  const uint64_t nt = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 0x7fffffffu)
    why = "grid out of range";
  else if (nt == 0 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    why = "block out of range";
  else if (smem > 48 * 1024)
    why = "dynamic shared memory over 48 KiB";
  else
    return true;
  return false;
}

// Host threads that play the CUDA threads of one block: created on first need (up to 1024) and
// reused by every later block and launch (creating ~10^5 threads under ASan is what made the
// emulation slow). Worker t runs CUDA thread t of the current block.
class ThreadPool {
 public:
  static ThreadPool& get() {
    static ThreadPool pool;
    return pool;
  }
  // Runs job(t) for t < n on workers 0..n-1 and returns when all have finished.
  void run(unsigned n, const std::function<void(unsigned)>& job) {
    while (workers_.size() < n) workers_.emplace_back(new Worker(this, unsigned(workers_.size())));
    job_ = &job;
    remaining_.store(n);
    for (unsigned t = 0; t < n; ++t) workers_[t]->go.release();
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return remaining_.load() == 0; });
  }
  ~ThreadPool() {
    quit_ = true;
    for (auto& w : workers_) w->go.release();
    for (auto& w : workers_) w->thread.join();
  }

 private:
  struct Worker {
    std::binary_semaphore go{0};
    std::thread thread;
    Worker(ThreadPool* pool, unsigned t) : thread([pool, t, this] { pool->loop(t, *this); }) {}
  };
  void loop(unsigned t, Worker& me) {
    for (;;) {
      me.go.acquire();
      if (quit_) return;
      (*job_)(t);
      if (remaining_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        done_.notify_one();
      }
    }
  }
  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(unsigned)>* job_ = nullptr;
  std::atomic<unsigned> remaining_{0};
  std::atomic<bool> quit_{false};
  std::mutex mu_;
  std::condition_variable done_;
};

// Runs body() as every thread of every block of the grid; blocks one after another. A failure
// inside the kernel stops the launch and is reported through cudaGetLastError.
inline void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, const char* name,
                   const std::function<void()>& body) {
  ++g_launches;
  std::string why;
  if (!config_ok(grid, block, smem, why)) {
    g_last_error = cudaErrorInvalidConfiguration;
    g_error_detail = std::string("invalid configuration for ") + name + ": " + why + " (grid " +
                     std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                     std::to_string(grid.z) + ", block " + std::to_string(block.x) + "x" +
                     std::to_string(block.y) + "x" + std::to_string(block.z) + ")";
    return;
  }
  g_grid_dim = grid;
  g_block_dim = block;
  g_kernel = name;
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block b;
        b.nthreads = b.live = nt;
        b.schedule = kRaceDetector ? kFree : g_schedule;
        if (b.schedule != kFree) {
          b.turn.reset(new std::condition_variable[nt]);
          b.waits_for.reset(new std::function<bool()>[nt]);
          b.exited.reset(new bool[nt]());
          b.running = b.schedule == kAscending ? 0 : nt - 1;
        }
        b.warps.reset(new Warp[(nt + 31) / 32]);
        for (unsigned t = 0; t < nt; ++t) b.warps[t >> 5].present |= 1u << (t & 31u);
        g_blk = &b;
        SharedPoison::poison_all();
        ThreadPool::get().run(nt, [&](unsigned t) {
          tl_block = dim3(bx, by, bz);
          tl_thread = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
          tl_tid = t;
          try {
            if (b.schedule != kFree) {  // wait for this thread's first turn
              std::unique_lock<std::mutex> lk(b.mu);
              while (!b.aborted && b.running != t) b.turn[t].wait(lk);
              if (b.aborted) throw Aborted{};
            }
            body();
          } catch (const Aborted&) {
          }
          thread_exit();
        });
        g_blk = nullptr;
        if (b.aborted) {
          g_last_error = cudaErrorLaunchFailure;
          g_error_detail = std::string("emulated kernel ") + name + ": " + b.error;
          return;
        }
      }
}

}  // namespace emu

#ifdef EMU_RACE_DETECTOR
// TSan calls this after printing each report: the count lets a harness fail the check whose
// kernels raced. (Weak in the TSan runtime; this definition takes its place.)
extern "C" inline __attribute__((used)) void __tsan_on_report(const void*) {
  emu::g_race_reports.fetch_add(1);
}
#endif

#define threadIdx (::emu::tl_thread)
#define blockIdx (::emu::tl_block)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
#define warpSize 32

inline void __syncthreads(std::source_location loc = std::source_location::current()) {
  emu::syncthreads(loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location loc = std::source_location::current()) {
  emu::warp_collective(emu::kSyncwarp, mask, 0, loc, [](const uint64_t*, uint64_t*, unsigned) {});
}
template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
                     std::source_location loc = std::source_location::current()) {
  return emu::shuffle(mask, var, loc, [=](unsigned l) {
    return (l / width) * width + (unsigned(src_lane) % width);
  });
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                         std::source_location loc = std::source_location::current()) {
  return emu::shuffle(mask, var, loc, [=](unsigned l) {
    const unsigned s = l ^ unsigned(lane_mask);
    return s / width == l / width ? s : l;  // outside the lane's width group: its own value
  });
}
template <class T>
inline unsigned __match_any_sync(unsigned mask, T value,
                                 std::source_location loc = std::source_location::current()) {
  return static_cast<unsigned>(emu::warp_collective(
      emu::kMatchAny, mask, emu::to_bits(value), loc,
      [](const uint64_t* in, uint64_t* out, unsigned m) {
        for (unsigned l = 0; l < 32; ++l) {
          if (!(m >> l & 1u)) continue;
          unsigned peers = 0;
          for (unsigned k = 0; k < 32; ++k)
            if ((m >> k & 1u) && in[k] == in[l]) peers |= 1u << k;
          out[l] = peers;
        }
      }));
}

// A __shared__ array whose contents are poisoned at the start of every block (preprocess.py
// rewrites `__shared__ T name[..];` into this).
#define EMU_SHARED_POISON(decl, name) \
  static decl;                        \
  static ::emu::SharedPoison emu_shared_poison_##name(&(name), sizeof(name))

// kernel<<<grid, block, smem, stream>>>(args...) as preprocess.py writes it.
#define EMU_LAUNCH(name, grid, block, smem, stream, ...) \
  ::emu::launch(dim3(grid), dim3(block), (smem), (stream), name, [&] { __VA_ARGS__; })

// The SGEMM ladder spells its launches this way (bench/dev/cuda_sgemm/common.cuh).
#define LADDER_LAUNCH(kernel, grid, block, stream, ...) \
  ::emu::launch(dim3(grid), dim3(block), 0, (stream), #kernel, [&] { kernel(__VA_ARGS__); })
