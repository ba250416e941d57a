// How the kernel libraries split a loop among threads. run_tasks(hand_off, tasks, body) runs
// body(i) for i in [0, tasks) on the calling thread and the threads hand_off gives the loop
// to; parallel_for(helpers, tasks, body), used by the optimizer kernels (_fused_kernels.cc),
// gives it to up to `helpers` threads of the library's own.
//
// Why not XLA's intra-op pool (ffi::ThreadPool): on a 2-core VM a parked pool thread took from
// 0.05 to 13 ms to start a task scheduled to it, so the caller often did a whole step alone
// (instrumented: 100 of 100 chunks on the calling thread). Our helpers spin for kSpin after
// each task before they sleep, as OpenMP's threads do (torch runs its loops on those):
// back-to-back steps then start on all cores at once. A flat momentum step over 1M params in
// one leaf went from 530-580 to 335-380 us (torch fused: 360-450 us in the same runs).
//
// The convolution kernels keep XLA's pool: in a training step XLA's own ops run between them,
// and helpers spinning there took a core from those ops (tried: LeNet training fell from
// 1.25-1.87x torch eager's throughput to 1.03-1.48x).
//
// Safety: the caller takes tasks too and returns once every task has run, so it never waits
// on a helper that is late, absent (e.g. after a fork) or busy with another caller's job. A
// late helper finds no task left and never calls body, so body may refer to the caller's
// locals. The helpers live as long as the process and are never joined or destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace jn_threads {

constexpr std::chrono::microseconds kSpin{300};

inline void cpu_relax() {  // a spin-wait hint to the core
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class Helpers {
 public:
  explicit Helpers(int64_t count) {
    for (int64_t t = 0; t < count; ++t) std::thread([this] { serve(); }).detach();
  }

  // Hands `job` to every helper; a job not yet taken is replaced (its caller runs it alone).
  // If the lock is taken (a helper is between spinning and sleeping, or a fork copied it
  // locked), the job is not posted and the caller runs it alone: it never blocks here.
  void post(std::shared_ptr<std::function<void()>> job) {
    {
      std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
      if (!lock.owns_lock()) return;
      job_ = std::move(job);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
  }

 private:
  void serve() {
    uint64_t seen = 0;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() - start < kSpin) {
        cpu_relax();
      }
      std::shared_ptr<std::function<void()>> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        job = job_;
      }
      if (job) (*job)();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<std::function<void()>> job_;  // guarded by mutex_
  std::atomic<uint64_t> generation_{0};
};

// The library's helpers, started on first use: `helpers` is the count asked for then
// (one fewer than XLA's pool has threads, i.e. cores, since the caller works too).
inline Helpers& helpers_for(int64_t helpers) {
  static Helpers* const instance = new Helpers(helpers);  // never destroyed: see above
  return *instance;
}

// Runs body(i) for i in [0, tasks) on the calling thread and on whichever threads
// `hand_off(drain)` gives the loop `drain` to (it runs drain() there, any number of times).
template <typename HandOff, typename Body>
void run_tasks(HandOff hand_off, int64_t tasks, Body body) {
  struct Counter {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto counter = std::make_shared<Counter>();
  auto drain = [counter, body, tasks]() {
    for (int64_t i; (i = counter->next.fetch_add(1)) < tasks;) {
      body(i);
      counter->done.fetch_add(1, std::memory_order_release);
    }
  };
  if (tasks > 1) hand_off(drain);
  drain();
  while (counter->done.load(std::memory_order_acquire) < tasks) std::this_thread::yield();
}

// run_tasks on the library's own helpers.
template <typename Body>
void parallel_for(int64_t helpers, int64_t tasks, Body body) {
  auto hand_off = [helpers](const auto& drain) {
    if (helpers > 0) helpers_for(helpers).post(std::make_shared<std::function<void()>>(drain));
  };
  run_tasks(hand_off, tasks, body);
}

}  // namespace jn_threads
