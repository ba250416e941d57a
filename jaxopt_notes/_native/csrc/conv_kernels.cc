// Direct NHWC convolutions for XLA:CPU (stride 1, no dilation, one group), called through
// jax.ffi: the forward correlation and the kernel gradient. The input gradient is a forward
// correlation of the padded output gradient with the flipped, transposed kernel, so two
// kernels cover a convolution's value and both gradients (and, through them, its higher
// derivatives).
//
// XLA:CPU runs the small convolutions of a LeNet slowly, its gradients most of all (Eigen's
// contraction, built for many channels). With few channels the work is an outer product per
// output pixel: for a fixed kernel row i, the (j, ci) taps of a pixel are one contiguous run
// of the input row, so both kernels below stream contiguous memory and keep a tile of
// accumulators in vector registers (the compiler vectorizes the fixed-length channel loops).
//
//   forward: out[n, oh, ow, co] = sum_{i, t} x[n, oh + i, ow * CI + t] * w[i, t, co]
//   kernel gradient: dw[i, t, co] = sum_{n, oh, ow} x[n, oh + i, ow * CI + t] * g[n, oh, ow, co]
//
// with t = j * CI + ci running over the KW * CI taps of a kernel row. Sums run in the order
// written (taps, then rows for the forward; pixels in row order per thread, then the threads'
// partial sums in order for the kernel gradient), in the arrays' own type.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernel_threads.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// COB lanes of T as one GCC vector (unaligned loads allowed); arithmetic on it maps to SIMD
// registers, a scalar times a vector broadcasts.
template <typename T, int COB>
using Vec [[gnu::vector_size(COB * sizeof(T)), gnu::aligned(sizeof(T))]] = T;

// The vector registers a tile of accumulators may fill: 32 of 64 bytes with AVX-512, 16 of
// 32 with AVX2, 16 of 16 otherwise (SSE; NEON has 32, the safe side). A tile larger than the
// registers spills to the stack on every tap.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64, kVectorRegisters = 32;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32, kVectorRegisters = 16;
#else
constexpr int kVectorBytes = 16, kVectorRegisters = 16;
#endif

// The most accumulators of COB lanes of T that fit beside the vector they are multiplied by
// and one broadcast.
template <typename T, int COB>
constexpr int max_tile() {
  constexpr int per = std::max<int>(1, int(COB * sizeof(T)) / kVectorBytes);
  return std::max(1, (kVectorRegisters - per - 1) / per);
}

// The widest tile in `tiles` (descending) of at most `limit` that divides `size`, else the
// widest of at most `limit` (the rest is done one at a time).
template <int N>
int pick_tile(const int (&tiles)[N], int64_t size, int limit) {
  for (int r : tiles)
    if (r <= limit && size % r == 0) return r;
  for (int r : tiles)
    if (r <= limit) return r;
  return 1;
}

template <typename T, int COB>
inline Vec<T, COB> load(const T* p) {
  return *reinterpret_cast<const Vec<T, COB>*>(p);  // GCC lets a vector alias its elements
}

// Runs body(task) for task in [0, tasks) on the calling thread and XLA's pool threads, one
// thread per core in all (the pool has one per core); see kernel_threads.h for why the
// convolutions keep XLA's pool.
template <typename Body>
void parallel_for(ffi::ThreadPool& pool, int64_t tasks, Body body) {
  auto hand_off = [&pool, tasks](const auto& drain) {
    const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, tasks - 1);
    for (int64_t t = 0; t < helpers; ++t) pool.Schedule([drain] { drain(); });
  };
  jn_threads::run_tasks(hand_off, tasks, body);
}

struct Shape {
  int64_t n, h, w, ci, kh, kw, co, oh, ow;
  int64_t taps() const { return kw * ci; }  // (j, ci) taps of one kernel row
};

// Output channels are processed in blocks of COB lanes; the packed kernel holds, for each
// block, [kh][taps][COB] with zeros past the last channel.
template <typename T, int COB>
std::vector<T> pack(const T* w, const Shape& s) {
  const int64_t blocks = (s.co + COB - 1) / COB, k = s.kh * s.taps();
  std::vector<T> out(blocks * k * COB, T(0));
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < COB && b * COB + c < s.co; ++c)
        out[(b * k + r) * COB + c] = w[r * s.co + b * COB + c];
  return out;
}

// R output pixels of one output row, one block of COB channels, accumulated in registers.
template <typename T, int COB, int R>
inline void forward_tile(const T* x, const T* wp, T* out, const Shape& s, int64_t n, int64_t oh,
                         int64_t ow0, int64_t block) {
  using V = Vec<T, COB>;
  V acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = V{};
  const int64_t taps = s.taps(), ci = s.ci;
  for (int64_t i = 0; i < s.kh; ++i) {
    const T* row = x + ((n * s.h + oh + i) * s.w + ow0) * ci;
    const T* wr = wp + (block * s.kh + i) * taps * COB;
    for (int64_t t = 0; t < taps; ++t) {
      const V wv = load<T, COB>(wr + t * COB);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r] += row[r * ci + t] * wv;
    }
  }
  const int64_t c0 = block * COB, width = std::min<int64_t>(COB, s.co - c0);
  for (int r = 0; r < R; ++r) {
    T* o = out + ((n * s.oh + oh) * s.ow + ow0 + r) * s.co + c0;
    // One vector store where it is exact (a full block) or where its lanes past `width` land
    // on later pixels of this row in the only block, which this thread writes afterwards;
    // where they would pass the row's end (the next row may be another thread's), lane by lane.
    if (width == COB || (s.co == width && (ow0 + r) * s.co + COB <= s.ow * s.co)) {
      *reinterpret_cast<V*>(o) = acc[r];
    } else {
      for (int64_t c = 0; c < width; ++c) o[c] = acc[r][c];
    }
  }
}

template <typename T, int COB, int R>
void forward_row(const T* x, const T* wp, T* out, const Shape& s, int64_t n, int64_t oh) {
  const int64_t blocks = (s.co + COB - 1) / COB;
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t ow = 0;
    for (; ow + R <= s.ow; ow += R) forward_tile<T, COB, R>(x, wp, out, s, n, oh, ow, b);
    for (; ow < s.ow; ++ow) forward_tile<T, COB, 1>(x, wp, out, s, n, oh, ow, b);
  }
}

template <typename T, int COB>
void forward(ffi::ThreadPool& pool, const T* x, const T* w, T* out, const Shape& s) {
  const std::vector<T> wp = pack<T, COB>(w, s);
  const int64_t rows = s.n * s.oh, per_task = std::max<int64_t>(1, rows / 64);
  const int64_t tasks = (rows + per_task - 1) / per_task;
  // the widest pixel tile that fits the registers and divides the row, else a remainder
  constexpr int kTiles[] = {14, 10, 8, 7, 6, 5, 4, 3, 2};
  const int tile = pick_tile(kTiles, s.ow, max_tile<T, COB>());
  parallel_for(pool, tasks, [&, tile](int64_t task) {
    const int64_t end = std::min(rows, (task + 1) * per_task);
    for (int64_t row = task * per_task; row < end; ++row) {
      const int64_t n = row / s.oh, oh = row % s.oh;
      switch (tile) {
        case 14: forward_row<T, COB, 14>(x, wp.data(), out, s, n, oh); break;
        case 10: forward_row<T, COB, 10>(x, wp.data(), out, s, n, oh); break;
        case 8: forward_row<T, COB, 8>(x, wp.data(), out, s, n, oh); break;
        case 7: forward_row<T, COB, 7>(x, wp.data(), out, s, n, oh); break;
        case 6: forward_row<T, COB, 6>(x, wp.data(), out, s, n, oh); break;
        case 5: forward_row<T, COB, 5>(x, wp.data(), out, s, n, oh); break;
        case 4: forward_row<T, COB, 4>(x, wp.data(), out, s, n, oh); break;
        case 3: forward_row<T, COB, 3>(x, wp.data(), out, s, n, oh); break;
        case 2: forward_row<T, COB, 2>(x, wp.data(), out, s, n, oh); break;
        default: forward_row<T, COB, 1>(x, wp.data(), out, s, n, oh); break;
      }
    }
  });
}

// TB taps of kernel row i, one block of COB channels, over one output row: acc += x * g.
template <typename T, int COB, int TB>
inline void kernel_grad_tile(const T* x, const T* g, T* acc, const Shape& s, int64_t n,
                             int64_t oh, int64_t i, int64_t t0, int64_t block) {
  const T* g_end = g + s.n * s.oh * s.ow * s.co;
  using V = Vec<T, COB>;
  V reg[TB];
  const int64_t taps = s.taps(), c0 = block * COB, width = std::min<int64_t>(COB, s.co - c0);
  const int64_t ci = s.ci, co = s.co;
  T* a = acc + ((block * s.kh + i) * taps + t0) * COB;
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) reg[t] = load<T, COB>(a + t * COB);
  const T* row = x + (n * s.h + oh + i) * s.w * ci + t0;
  const T* grow = g + (n * s.oh + oh) * s.ow * co + c0;
  for (int64_t ow = 0; ow < s.ow; ++ow) {
    V gv{};
    if (width == COB || grow + ow * co + COB <= g_end) {
      gv = load<T, COB>(grow + ow * co);  // lanes past `width` feed discarded accumulators
    } else {
      for (int64_t c = 0; c < width; ++c) gv[c] = grow[ow * co + c];
    }
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) reg[t] += row[ow * ci + t] * gv;
  }
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t) *reinterpret_cast<V*>(a + t * COB) = reg[t];
}

template <typename T, int COB, int TB>
void kernel_grad_row(const T* x, const T* g, T* acc, const Shape& s, int64_t n, int64_t oh) {
  const int64_t blocks = (s.co + COB - 1) / COB, taps = s.taps();
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < s.kh; ++i) {
      int64_t t = 0;
      for (; t + TB <= taps; t += TB) kernel_grad_tile<T, COB, TB>(x, g, acc, s, n, oh, i, t, b);
      for (; t < taps; ++t) kernel_grad_tile<T, COB, 1>(x, g, acc, s, n, oh, i, t, b);
    }
}

template <typename T, int COB>
void kernel_grad(ffi::ThreadPool& pool, const T* x, const T* g, T* dw, const Shape& s) {
  const int64_t rows = s.n * s.oh, tasks = std::clamp<int64_t>(rows, 1, 16);  // 1: zeros
  const int64_t blocks = (s.co + COB - 1) / COB, k = s.kh * s.taps();
  const int64_t size = blocks * k * COB;
  std::vector<T> partial(tasks * size, T(0));
  // the widest tap tile that fits the registers and divides a kernel row's taps
  constexpr int kTiles[] = {10, 8, 6, 5, 4, 3, 2};
  const int tb = pick_tile(kTiles, s.taps(), max_tile<T, COB>());
  parallel_for(pool, tasks, [&, tb](int64_t task) {
    const int64_t begin = rows * task / tasks, end = rows * (task + 1) / tasks;
    T* acc = partial.data() + task * size;
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / s.oh, oh = row % s.oh;
      switch (tb) {
        case 10: kernel_grad_row<T, COB, 10>(x, g, acc, s, n, oh); break;
        case 8: kernel_grad_row<T, COB, 8>(x, g, acc, s, n, oh); break;
        case 6: kernel_grad_row<T, COB, 6>(x, g, acc, s, n, oh); break;
        case 5: kernel_grad_row<T, COB, 5>(x, g, acc, s, n, oh); break;
        case 4: kernel_grad_row<T, COB, 4>(x, g, acc, s, n, oh); break;
        case 3: kernel_grad_row<T, COB, 3>(x, g, acc, s, n, oh); break;
        case 2: kernel_grad_row<T, COB, 2>(x, g, acc, s, n, oh); break;
        default: kernel_grad_row<T, COB, 1>(x, g, acc, s, n, oh); break;
      }
    }
  });
  for (int64_t task = 1; task < tasks; ++task)
    for (int64_t e = 0; e < size; ++e) partial[e] += partial[task * size + e];
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < COB && b * COB + c < s.co; ++c)
        dw[r * s.co + b * COB + c] = partial[(b * k + r) * COB + c];
}

// Runs kernel(T{}, block) for the arrays' type T and the channel block (a
// std::integral_constant, so both are compile-time). With AVX-512: 8 lanes for up to 8
// channels, else blocks of 16. Otherwise one native register's lanes (AVX2: 8 floats, 4
// doubles): GCC splits a wider vector into piecewise code that ran LeNet's 16-channel
// convolution ~5x slower than XLA's on an AVX2 machine.
template <typename Kernel>
ffi::Error by_type_and_block(ffi::DataType type, int64_t co, const char* what, Kernel kernel) {
  auto with_block = [&](auto zero) {
#if defined(__AVX512F__)
    if (co <= 8) kernel(zero, std::integral_constant<int, 8>{});
    else kernel(zero, std::integral_constant<int, 16>{});
#else
    (void)co;
    kernel(zero, std::integral_constant<int, int(kVectorBytes / sizeof(zero))>{});
#endif
  };
  if (type == ffi::DataType::F32) with_block(0.0f);
  else if (type == ffi::DataType::F64) with_block(0.0);
  else return ffi::Error::InvalidArgument(std::string(what) + ": float32 or float64 only");
  return ffi::Error::Success();
}

ffi::Error check_ranks(const ffi::AnyBuffer& a, const char* a_name, const ffi::AnyBuffer& b,
                       const char* b_name) {
  for (auto [buffer, name] : {std::pair{&a, a_name}, std::pair{&b, b_name}})
    if (buffer->dimensions().size() != 4)
      return ffi::Error::InvalidArgument(std::string(name) + " must have rank 4 (NHWC or HWIO)");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer w,
                   ffi::Result<ffi::AnyBuffer> out) {
  if (auto e = check_ranks(x, "x", w, "w"); e.failure()) return e;
  auto xd = x.dimensions(), wd = w.dimensions();
  Shape s{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], xd[1] - wd[0] + 1, xd[2] - wd[1] + 1};
  if (wd[2] != s.ci || s.oh < 1 || s.ow < 1)
    return ffi::Error::InvalidArgument("conv: kernel does not fit the input");
  return by_type_and_block(x.element_type(), s.co, "conv", [&](auto zero, auto block) {
    using T = decltype(zero);
    forward<T, decltype(block)::value>(pool, static_cast<const T*>(x.untyped_data()),
                                       static_cast<const T*>(w.untyped_data()),
                                       static_cast<T*>(out->untyped_data()), s);
  });
}

ffi::Error KernelGrad(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer g,
                      ffi::Result<ffi::AnyBuffer> dw) {
  if (auto e = check_ranks(x, "x", g, "g"); e.failure()) return e;
  auto xd = x.dimensions(), gd = g.dimensions();
  Shape s{xd[0], xd[1], xd[2], xd[3], xd[1] - gd[1] + 1, xd[2] - gd[2] + 1, gd[3], gd[1], gd[2]};
  if (gd[0] != s.n || s.kh < 1 || s.kw < 1)
    return ffi::Error::InvalidArgument("conv kernel gradient: shapes do not match");
  return by_type_and_block(x.element_type(), s.co, "conv kernel gradient",
                           [&](auto zero, auto block) {
                             using T = decltype(zero);
                             kernel_grad<T, decltype(block)::value>(
                                 pool, static_cast<const T*>(x.untyped_data()),
                                 static_cast<const T*>(g.untyped_data()),
                                 static_cast<T*>(dw->untyped_data()), s);
                           });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnConvKernelGrad, KernelGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
