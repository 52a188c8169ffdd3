// An exception must not leave an OpenMP region (the runtime calls std::terminate): each thread
// runs its share through run(), which keeps the first exception, and rethrow() raises it after
// the region. A thread that throws stops its share; the others finish theirs.
#pragma once
#include <exception>
#include <mutex>

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

}  // namespace nncore::cpu
