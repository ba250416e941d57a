// How the kernel libraries split a loop among threads. run_tasks(hand_off, tasks, body) runs
// body(i) for i in [0, tasks) on the calling thread and the threads hand_off gives the loop
// to; parallel_for(helpers, tasks, body), used by the optimizer kernels (fused_kernels.cc),
// gives it to up to `helpers` threads of the library's own.
//
// Why not XLA's intra-op pool (ffi::ThreadPool) for the optimizer steps: a parked pool thread
// can take milliseconds to start a task, so the caller often did a whole step alone. Our
// helpers spin for a while after each task before they sleep, as OpenMP's threads do, so
// back-to-back steps start on all cores at once (timings: `jaxopt-notes bench step`).
//
// The convolution kernels keep XLA's pool: in a training step XLA's own ops run between them,
// and helpers spinning there would take a core from those ops.
//
// Two environment variables, read once per process (jaxopt_notes._native validates them):
// JAXOPT_NOTES_THREADS, the number of helper threads (unset: one per core but one; 0: none,
// the caller works alone), and JAXOPT_NOTES_SPIN_US, how long an idle helper spins before it
// sleeps, in microseconds (unset: 300; 0: it sleeps at once).
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
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace jn_threads {

// A whole number >= 0 from the environment, or `fallback` when unset or not one.
inline int64_t env_count(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  return (*end == '\0' && value >= 0) ? static_cast<int64_t>(value) : fallback;
}

// How long an idle helper spins before it sleeps: $JAXOPT_NOTES_SPIN_US, default 300 us.
inline std::chrono::microseconds spin_time() {
  static const std::chrono::microseconds spin{env_count("JAXOPT_NOTES_SPIN_US", 300)};
  return spin;
}

// The helper count: $JAXOPT_NOTES_THREADS if set, else `fallback`.
inline int64_t helper_count(int64_t fallback) {
  static const int64_t count = env_count("JAXOPT_NOTES_THREADS", -1);
  return count < 0 ? fallback : count;
}

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
    const auto spin = spin_time();
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() - start < spin) {
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

// The library's helpers, started on first use: `helpers` is the count asked for then.
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
// `helpers` is the count wanted by default; $JAXOPT_NOTES_THREADS overrides it.
template <typename Body>
void parallel_for(int64_t default_helpers, int64_t tasks, Body body) {
  const int64_t helpers = default_helpers > 0 ? helper_count(default_helpers) : 0;
  auto hand_off = [helpers](const auto& drain) {
    if (helpers > 0) helpers_for(helpers).post(std::make_shared<std::function<void()>>(drain));
  };
  run_tasks(hand_off, tasks, body);
}

}  // namespace jn_threads
