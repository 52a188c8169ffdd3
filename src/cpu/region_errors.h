// An exception must not leave an OpenMP region (the runtime calls std::terminate): each thread
// runs its share through run(), which keeps the first exception, and rethrow() raises it after
// the region. A thread that throws stops its share; the others finish theirs.
#pragma once
#include <exception>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nncore::cpu {

class RegionErrors {
 public:
  template <typename Body>
  void run(Body&& body) noexcept {
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
};

// Runs body(thread, threads) on every thread of a new parallel region, errors raised after it;
// or body(0, 1) on the calling thread when not `parallel` or already inside a region (an
// if(false) or nested region still builds a team of one: a heap allocation per call, e.g. per
// conv pass).
template <typename Body>
void run_on_team(bool parallel, Body&& body) {
#ifdef _OPENMP
  if (parallel && !omp_in_parallel()) {
    RegionErrors errors;
#pragma omp parallel
    errors.run([&] { body(omp_get_thread_num(), omp_get_num_threads()); });
    errors.rethrow();
    return;
  }
#endif
  body(0, 1);
}

}  // namespace nncore::cpu
