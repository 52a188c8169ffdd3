// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, so element i of a random stream is computed directly from
// (seed, counter) with no state: the CPU and CUDA kernels draw identical numbers.
#pragma once
#include <cstdint>

#include "nncore/host_device.h"

namespace nncore {

struct Philox4 {
  uint32_t v[4];
};

NNCORE_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// Ten rounds of the Philox4x32 bijection of `counter` under `key`.
NNCORE_HOST_DEVICE Philox4 philox4x32_10(Philox4 counter, uint32_t key0, uint32_t key1) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, counter.v[0], hi0, lo0);
    philox_mulhilo(kMul1, counter.v[2], hi1, lo1);
    counter = Philox4{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// Uniform float in [0, 1) for element `index` of the stream (seed, offset): block
// offset + index/4 of Philox, word index%4, top 24 bits (exactly representable).
NNCORE_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  const uint64_t block = offset + index / 4;
  const Philox4 counter{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  const Philox4 out =
      philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(out.v[index % 4] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace nncore
