// Vector chunks as wide as the CPU has, for the row kernels of im2col.cpp and pool.cpp: GCC/Clang
// vector types, and a marker that compiles a function once per x86 width (target clones for
// AVX-512, AVX2 and the baseline, picked at load time), so in each clone a FloatsN is the
// widest register that holds it. Loads and stores go through fixed-size memcpy: unaligned
// moves, no strict-aliasing questions.
#pragma once
#include <cstdint>

namespace nncore::cpu {

typedef float Floats4 __attribute__((vector_size(16)));
typedef float Floats8 __attribute__((vector_size(32)));
typedef float Floats16 __attribute__((vector_size(64)));
typedef int32_t Ints4 __attribute__((vector_size(16)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
typedef int32_t Ints16 __attribute__((vector_size(64)));

// The int32 vector with as many lanes as float vector type V (comparisons of V give one).
template <typename V> struct IntsOf;
template <> struct IntsOf<Floats4> { typedef Ints4 type; };
template <> struct IntsOf<Floats8> { typedef Ints8 type; };
template <> struct IntsOf<Floats16> { typedef Ints16 type; };

// Helpers of NNCORE_WIDEST_VECTORS functions must be inlined into each clone to be compiled for
// its width (an out-of-line copy is baseline code, passing wide vectors through memory).
#define NNCORE_ALWAYS_INLINE inline __attribute__((always_inline))

// (bench/dev/cpu_kernels_check.cpp defines it empty to check one width at a time.)
#ifndef NNCORE_WIDEST_VECTORS
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define NNCORE_WIDEST_VECTORS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NNCORE_WIDEST_VECTORS
#endif
#endif

}  // namespace nncore::cpu
