// One-pass, multi-threaded optimizer steps for XLA:CPU, called through jax.ffi.
//
// XLA:CPU compiles an optimizer step into one loop fusion per output array: Adam becomes three
// passes over memory (the first moment, the second moment, then the parameters re-reading both
// moments), 40 bytes per float32 parameter where one pass needs 28. These kernels read every
// array once and write the parameters and moments in place (the Python side aliases inputs to
// outputs), sharing the chunks of all leaves among the cores (kernel_threads.h).
//
// The arithmetic is the chain's, operation for operation and in the same order, in the
// parameters' own type. Built with -ffp-contract=off (no fused multiply-adds) and without
// -ffast-math, every operation rounds once, as in NumPy; XLA contracts some of the chain's
// multiply-adds into FMAs, so the two differ in the last bits. Step-dependent scalars (bias
// corrections, the learning rate) are computed in JAX and arrive in a small `coef` buffer.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_threads.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kChunk = 1 << 15;  // elements per task: 128 KiB of each float32 array

// A piece of one leaf: [begin, end) of its elements.
struct Chunk {
  int64_t leaf, begin, end;
};

std::vector<Chunk> split(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> chunks;
  for (int64_t leaf = 0; leaf < static_cast<int64_t>(sizes.size()); ++leaf) {
    for (int64_t b = 0; b < sizes[leaf]; b += kChunk) {
      chunks.push_back({leaf, b, std::min(sizes[leaf], b + kChunk)});
    }
  }
  return chunks;
}

// Pointers to `arrays` arrays per leaf, read from args[first + leaf * arrays + a], and each
// leaf's element count (that of its first array; all of a leaf's arrays have its shape).
template <typename T>
ffi::ErrorOr<std::vector<T*>> pointers(const ffi::RemainingArgs& args, int64_t first,
                                       int64_t arrays, int64_t leaves,
                                       std::vector<int64_t>& sizes) {
  std::vector<T*> out;
  for (int64_t i = 0; i < leaves * arrays; ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(first + i);
    if (buffer.has_error()) return ffi::Unexpected(buffer.error());
    out.push_back(static_cast<T*>(buffer->untyped_data()));
    if (i % arrays == 0) sizes.push_back(static_cast<int64_t>(buffer->element_count()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The kernels. Flags are template parameters so that every variant is a branch-free loop the
// compiler vectorizes. `guard`: a zero denominator gives u = 0, as the chain's `ratio` does
// when its eps is not a positive constant. Divisions by a step's scalar (the bias corrections)
// are multiplications by its reciprocal, because that is what XLA rewrites them into.

// Momentum on an update u: 0 none, 1 heavy-ball, 2 Nesterov; the trace is updated in place.
template <typename T, int Momentum>
inline T momentum_step(T u, T* __restrict tr, int64_t i, T beta) {
  if constexpr (Momentum == 0) {
    return u;
  } else {
    const T v = u + beta * tr[i];
    tr[i] = v;
    return Momentum == 2 ? u + beta * v : v;
  }
}

// Runs op(i) for i in [begin, end) in blocks of one cache line of T, asking at each block for
// the line kAhead elements on in every array (a prefetch never faults, so past an array's end
// it is only wasted): with many leaves the hardware prefetcher alone starts each leaf cold. The
// fixed-length inner loop vectorizes without a remainder; the tail runs one by one.
constexpr int64_t kAhead = 512;

template <typename T, typename Op, typename... A>
inline void by_lines(int64_t begin, int64_t end, Op op, const A*... arrays) {
  constexpr int64_t line = 64 / sizeof(T);
  int64_t b = begin;
  for (; b + line <= end; b += line) {
    (__builtin_prefetch(arrays + b + kAhead), ...);
    for (int64_t i = b; i < b + line; ++i) op(i);
  }
  for (; b < end; ++b) op(b);
}

template <typename T, bool Guard>
inline T divide(T num, T den) {
  if constexpr (Guard) {
    return den > T(0) ? num / den : T(0);
  } else {
    return num / den;
  }
}

// Adam, AdamW, AMSGrad. Per leaf (p, g, mu, nu[, nu_max]); results (p, mu, nu[, nu_max]).
// coef = [1-b1, b1, 1-b2, b2, 1/(1-b1^t), 1/(1-b2^t), eps, eps_root, -lr, weight decay].
// Amsgrad: 0 none, 1 the max of corrected moments (optax), 2 of raw moments (torch).
template <typename T, int Amsgrad, bool Decay, bool Guard>
void adam_chunk(const Chunk& c, const T* k, T* const* a) {
  constexpr int64_t n = Amsgrad ? 5 : 4;
  T* __restrict p = a[c.leaf * n + 0];
  const T* __restrict g = a[c.leaf * n + 1];
  T* __restrict mu = a[c.leaf * n + 2];
  T* __restrict nu = a[c.leaf * n + 3];
  T* __restrict nu_max = Amsgrad ? a[c.leaf * n + 4] : nullptr;
  const T c1 = k[0], b1 = k[1], c2 = k[2], b2 = k[3], r1 = k[4], r2 = k[5], eps = k[6],
          eps_root = k[7], neg_lr = k[8], wd = k[9];
  auto op = [&](int64_t i) {
    const T m = c1 * g[i] + b1 * mu[i];
    const T v = c2 * (g[i] * g[i]) + b2 * nu[i];
    mu[i] = m;
    nu[i] = v;
    T v_hat;
    if constexpr (Amsgrad == 2) {
      const T v_max = std::max(nu_max[i], v);
      nu_max[i] = v_max;
      v_hat = v_max * r2;
    } else if constexpr (Amsgrad == 1) {
      v_hat = std::max(nu_max[i], v * r2);
      nu_max[i] = v_hat;
    } else {
      v_hat = v * r2;
    }
    T u = divide<T, Guard>(m * r1, std::sqrt(v_hat + eps_root) + eps);
    if constexpr (Decay) u = u + wd * p[i];
    p[i] = p[i] + neg_lr * u;
  };
  if constexpr (Amsgrad) {
    by_lines<T>(c.begin, c.end, op, p, g, mu, nu, nu_max);
  } else {
    by_lines<T>(c.begin, c.end, op, p, g, mu, nu);
  }
}

// bfloat16 storage: the upper half of a float32; stored rounding to nearest, ties to even, as
// XLA's convert does (NaN stays a quiet NaN).
inline float from_bf16(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Adam with bfloat16 moments (float32 params): each step computes in float32 from the stored
// moments and stores them rounded, as the chain with `moment_dtype=jnp.bfloat16` does.
// Per leaf (p, g, mu, nu); coef as for Adam.
template <bool Guard>
void adam_bf16_chunk(const Chunk& c, const float* k, float* const* a) {
  float* __restrict p = a[c.leaf * 4 + 0];
  const float* __restrict g = a[c.leaf * 4 + 1];
  uint16_t* __restrict mu = reinterpret_cast<uint16_t*>(a[c.leaf * 4 + 2]);
  uint16_t* __restrict nu = reinterpret_cast<uint16_t*>(a[c.leaf * 4 + 3]);
  const float c1 = k[0], b1 = k[1], c2 = k[2], b2 = k[3], r1 = k[4], r2 = k[5], eps = k[6],
              eps_root = k[7], neg_lr = k[8];
  auto op = [&](int64_t i) {
    const float m = c1 * g[i] + b1 * from_bf16(mu[i]);
    const float v = c2 * (g[i] * g[i]) + b2 * from_bf16(nu[i]);
    mu[i] = to_bf16(m);
    nu[i] = to_bf16(v);
    const float u = divide<float, Guard>(m * r1, std::sqrt(v * r2 + eps_root) + eps);
    p[i] = p[i] + neg_lr * u;
  };
  by_lines<float>(c.begin, c.end, op, p, g, mu, nu);
}

// SGD with momentum. Per leaf (p, g, trace); results (p, trace). coef = [beta, -lr].
template <typename T, int Momentum>
void sgd_chunk(const Chunk& c, const T* k, T* const* a) {
  T* __restrict p = a[c.leaf * 3 + 0];
  const T* __restrict g = a[c.leaf * 3 + 1];
  T* __restrict tr = a[c.leaf * 3 + 2];
  const T beta = k[0], neg_lr = k[1];
  auto op = [&](int64_t i) {
    p[i] = p[i] + neg_lr * momentum_step<T, Momentum>(g[i], tr, i, beta);
  };
  by_lines<T>(c.begin, c.end, op, p, g, tr);
}

// RMSProp and AdaGrad: v = c2 g^2 + rho v (AdaGrad: c2 = rho = 1, a plain sum), then
// u = g / (sqrt(v + eps_root) + eps), then momentum on u. Per leaf (p, g, nu[, trace]);
// results (p, nu[, trace]). coef = [c2, rho, eps_root, eps, -lr, beta].
template <typename T, bool Guard, int Momentum>
void scaled_chunk(const Chunk& c, const T* k, T* const* a) {
  constexpr int64_t n = Momentum ? 4 : 3;
  T* __restrict p = a[c.leaf * n + 0];
  const T* __restrict g = a[c.leaf * n + 1];
  T* __restrict nu = a[c.leaf * n + 2];
  T* __restrict tr = Momentum ? a[c.leaf * n + 3] : nullptr;
  const T c2 = k[0], rho = k[1], eps_root = k[2], eps = k[3], neg_lr = k[4], beta = k[5];
  auto op = [&](int64_t i) {
    const T v = c2 * (g[i] * g[i]) + rho * nu[i];
    nu[i] = v;
    const T u = divide<T, Guard>(g[i], std::sqrt(v + eps_root) + eps);
    p[i] = p[i] + neg_lr * momentum_step<T, Momentum>(u, tr, i, beta);
  };
  if constexpr (Momentum) {
    by_lines<T>(c.begin, c.end, op, p, g, nu, tr);
  } else {
    by_lines<T>(c.begin, c.end, op, p, g, nu);
  }
}

// Pointers for the flat-state layout, args = (coef, (p, g) per leaf, state buffers...): each
// state buffer holds every leaf's elements in order, so a leaf's state array starts at the
// sum of the earlier leaves' sizes (in that buffer's own element width: bf16 moments too).
template <typename T>
ffi::ErrorOr<std::vector<T*>> flat_pointers(const ffi::RemainingArgs& args, int64_t arrays,
                                            std::vector<int64_t>& sizes) {
  const int64_t states = arrays - 2;
  const int64_t leaves = (static_cast<int64_t>(args.size()) - 1 - states) / 2;
  auto per_leaf = pointers<T>(args, 1, 2, leaves, sizes);
  if (per_leaf.has_error()) return per_leaf;
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  std::vector<T*> out(leaves * arrays);
  for (int64_t j = 0; j < states; ++j) {
    auto buffer = args.get<ffi::AnyBuffer>(1 + 2 * leaves + j);
    if (buffer.has_error()) return ffi::Unexpected(buffer.error());
    if (static_cast<int64_t>(buffer->element_count()) != total) {
      return ffi::Unexpected(ffi::Error::InvalidArgument(
          "a flat state buffer must hold as many elements as all the params together"));
    }
    const int64_t width = static_cast<int64_t>(buffer->size_bytes()) / std::max<int64_t>(1, total);
    char* base = static_cast<char*>(buffer->untyped_data());
    for (int64_t leaf = 0, offset = 0; leaf < leaves; offset += sizes[leaf], ++leaf) {
      out[leaf * arrays + 2 + j] = reinterpret_cast<T*>(base + offset * width);
    }
  }
  for (int64_t leaf = 0; leaf < leaves; ++leaf) {
    out[leaf * arrays] = (*per_leaf)[2 * leaf];
    out[leaf * arrays + 1] = (*per_leaf)[2 * leaf + 1];
  }
  return out;
}

// Reads the call layout, args = (coef, leaf arrays...) with `arrays` arrays per leaf (or the
// flat-state layout), and runs `chunk` over all of it.
template <typename T>
ffi::Error run(ffi::ThreadPool pool, const ffi::RemainingArgs& args, int64_t arrays, bool flat,
               void (*chunk)(const Chunk&, const T*, T* const*)) {
  const int64_t leaves = (static_cast<int64_t>(args.size()) - 1) / arrays;
  auto coef = args.get<ffi::AnyBuffer>(0);
  if (coef.has_error()) return coef.error();
  std::vector<int64_t> sizes;
  auto ptrs = flat ? flat_pointers<T>(args, arrays, sizes)
                   : pointers<T>(args, 1, arrays, leaves, sizes);
  if (ptrs.has_error()) return ptrs.error();
  const std::vector<Chunk> chunks = split(sizes);
  const T* k = static_cast<const T*>(coef->untyped_data());
  T* const* a = ptrs->data();
  // The calling thread works too, so one helper fewer than XLA's pool (one thread per core),
  // unless $JAXOPT_NOTES_THREADS says otherwise (kernel_threads.h). Below two chunks' worth
  // of elements the caller steps alone: such a step is short, and a helper woken for it would
  // then spin beside the model's next XLA ops.
  int64_t elements = 0;
  for (int64_t size : sizes) elements += size;
  const int64_t helpers = elements >= 2 * kChunk ? pool.num_threads() - 1 : 0;
  jn_threads::parallel_for(helpers, static_cast<int64_t>(chunks.size()),
                           [&](int64_t i) { chunk(chunks[i], k, a); });
  return ffi::Error::Success();
}

using ChunkFn32 = void (*)(const Chunk&, const float*, float* const*);
using ChunkFn64 = void (*)(const Chunk&, const double*, double* const*);

// Runs the float32 or float64 instance, by the type of the coefficients (all arrays share it).
ffi::Error by_type(ffi::ThreadPool pool, const ffi::RemainingArgs& args, int64_t arrays,
                   bool flat, ChunkFn32 f32, ChunkFn64 f64) {
  auto coef = args.get<ffi::AnyBuffer>(0);
  if (coef.has_error()) return coef.error();
  if (coef->element_type() == ffi::DataType::F32) return run<float>(pool, args, arrays, flat, f32);
  if (coef->element_type() == ffi::DataType::F64 && f64 != nullptr) {
    return run<double>(pool, args, arrays, flat, f64);
  }
  return ffi::Error::InvalidArgument("fused kernels take float32 or float64 arrays");
}

// Tables of instances, indexed by the runtime flags.
template <typename T, int A>
constexpr std::array<void (*)(const Chunk&, const T*, T* const*), 4> adam_row = {
    adam_chunk<T, A, false, false>, adam_chunk<T, A, false, true>, adam_chunk<T, A, true, false>,
    adam_chunk<T, A, true, true>};

ffi::Error Adam(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets, int64_t amsgrad,
                bool decay, bool guard, bool bf16_moments, bool flat) {
  if (amsgrad < 0 || amsgrad > 2) return ffi::Error::InvalidArgument("amsgrad must be 0, 1 or 2");
  if (bf16_moments) {
    if (amsgrad || decay) return ffi::Error::InvalidArgument("bf16 moments: plain Adam only");
    auto f32 = guard ? adam_bf16_chunk<true> : adam_bf16_chunk<false>;
    return by_type(pool, args, 4, flat, f32, nullptr);
  }
  const int64_t i = 2 * decay + guard;
  const std::array<ChunkFn32, 3> f32 = {adam_row<float, 0>[i], adam_row<float, 1>[i],
                                        adam_row<float, 2>[i]};
  const std::array<ChunkFn64, 3> f64 = {adam_row<double, 0>[i], adam_row<double, 1>[i],
                                        adam_row<double, 2>[i]};
  return by_type(pool, args, amsgrad ? 5 : 4, flat, f32[amsgrad], f64[amsgrad]);
}

ffi::Error Sgd(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets,
               int64_t momentum, bool flat) {
  if (momentum == 1) return by_type(pool, args, 3, flat, sgd_chunk<float, 1>, sgd_chunk<double, 1>);
  if (momentum == 2) return by_type(pool, args, 3, flat, sgd_chunk<float, 2>, sgd_chunk<double, 2>);
  return ffi::Error::InvalidArgument("momentum must be 1 or 2");
}

template <int M>
ffi::Error scaled_with(ffi::ThreadPool pool, const ffi::RemainingArgs& args, bool guard, bool flat) {
  const int64_t arrays = M ? 4 : 3;
  if (guard) return by_type(pool, args, arrays, flat, scaled_chunk<float, true, M>,
                            scaled_chunk<double, true, M>);
  return by_type(pool, args, arrays, flat, scaled_chunk<float, false, M>,
                 scaled_chunk<double, false, M>);
}

ffi::Error Scaled(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets, bool guard,
                  int64_t momentum, bool flat) {
  if (momentum == 0) return scaled_with<0>(pool, args, guard, flat);
  if (momentum == 1) return scaled_with<1>(pool, args, guard, flat);
  if (momentum == 2) return scaled_with<2>(pool, args, guard, flat);
  return ffi::Error::InvalidArgument("momentum must be 0, 1 or 2");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnFusedAdam, Adam,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("amsgrad")
                                  .Attr<bool>("decay")
                                  .Attr<bool>("guard")
                                  .Attr<bool>("bf16_moments")
                                  .Attr<bool>("flat_state"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnFusedSgd, Sgd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("momentum")
                                  .Attr<bool>("flat_state"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JnFusedScaled, Scaled,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<bool>("guard")
                                  .Attr<int64_t>("momentum")
                                  .Attr<bool>("flat_state"));
