// plinth's CPU kernels for a Llama block, as libtorch autograd functions behind
// a C ABI (tch binds no custom functions).
//
//   rms_norm(x, w, eps)  y = x / sqrt(mean(x^2) + eps) * w, one pass forward
//                        and one backward (dx and dw), where ATen needs a chain
//                        of elementwise kernels and temporaries each way;
//   swiglu(gu)           h = silu(g) * u for gu = [g | u] (the output of the
//                        fused gate/up GEMM), forward in one pass; backward
//                        writes d[g | u] in one pass straight into the layout
//                        the GEMM's backward reads, where eager autograd runs
//                        five kernels and then concatenates the two halves;
//   linear(x, w, b)      x @ w^T + b with every GEMM, forward and backward, on
//                        oneDNN (bundled in libtorch) instead of the BLAS that
//                        ATen's `linear` calls for float32 (MKL in the wheel);
//   rope_qkv(qkv, ...)   q, k, v in (B, heads, T, D) from the fused q/k/v GEMM's
//                        output (B, T, (H + 2 Hkv) D), q and k rotated by the
//                        rotary tables, in one pass; backward writes d(qkv)
//                        whole in one pass, where eager autograd rolls,
//                        multiplies, adds, transposes and concatenates.
//
// Float32, CPU, contiguous rows; the Rust side routes everything else to the
// composed ATen ops. Rows run in parallel on ATen's intra-op pool (OpenMP,
// libtorch's own runtime). The reduction over rows (dw) sums fixed 64-row
// blocks, each in row order, then the blocks with ATen's sum, so it does not
// depend on how the pool schedules rows. The AVX2 paths are picked at run time;
// in the hand-vectorised kernels (RMSNorm, SwiGLU) every element, tails included,
// goes through the same arithmetic, so a value's result does not depend on its
// column. C++ exceptions come back through `err`
// (caller-owned), never across the boundary.

#include <ATen/Parallel.h>
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PLINTH_X86 1
#endif

// oneDNN's matmul as libtorch wraps it (exported from libtorch_cpu, header not
// shipped in the wheel): result = beta * result + alpha * mat1 @ mat2, for
// 2-D operands that are contiguous or transposed. Float32 runs at full
// precision unless the process asked for bf16/tf32 matmuls, which plinth never
// does.
namespace at::native {
TORCH_API void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2, const at::Tensor& result, float beta,
                             float alpha);
}  // namespace at::native

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool use_avx2() {
#ifdef PLINTH_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

// Rows per task: enough work per task to amortise the pool's overhead.
int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

// Rows per block of the dw reduction: fixed, so the summation order is too.
constexpr int64_t kReduceRows = 64;

// ---------------------------------------------------------------- scalar ----

float sigmoid_scalar(float g) { return 1.0f / (1.0f + std::exp(-g)); }

void rms_fwd_scalar(const float* x, const float* w, float* y, float* inv, int64_t r0, int64_t r1, int64_t c,
                    float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    float ss = 0.f;
    for (int64_t j = 0; j < c; ++j) ss += xr[j] * xr[j];
    const float iv = 1.0f / std::sqrt(ss / static_cast<float>(c) + eps);
    inv[r] = iv;
    for (int64_t j = 0; j < c; ++j) y[r * c + j] = xr[j] * iv * w[j];
  }
}

// dx for rows r0..r1 (when dx != nullptr) and this block's dw partial (when
// dwp != nullptr, zeroed by the caller).
void rms_bwd_scalar(const float* dy, const float* x, const float* w, const float* inv, float* dx, float* dwp,
                    int64_t r0, int64_t r1, int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    const float* dyr = dy + r * c;
    const float iv = inv[r];
    if (dwp != nullptr)
      for (int64_t j = 0; j < c; ++j) dwp[j] += dyr[j] * xr[j] * iv;
    if (dx != nullptr) {
      float dot = 0.f;
      for (int64_t j = 0; j < c; ++j) dot += dyr[j] * w[j] * xr[j];
      const float k = iv * iv * iv * dot / static_cast<float>(c);
      for (int64_t j = 0; j < c; ++j) dx[r * c + j] = iv * w[j] * dyr[j] - xr[j] * k;
    }
  }
}

void swiglu_fwd_scalar(const float* gu, float* h, int64_t r0, int64_t r1, int64_t f) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = gu + r * 2 * f;
    const float* u = g + f;
    for (int64_t j = 0; j < f; ++j) h[r * f + j] = g[j] * sigmoid_scalar(g[j]) * u[j];
  }
}

void swiglu_bwd_scalar(const float* dh, const float* gu, float* dgu, int64_t r0, int64_t r1, int64_t f) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = gu + r * 2 * f;
    const float* u = g + f;
    float* dg = dgu + r * 2 * f;
    float* du = dg + f;
    for (int64_t j = 0; j < f; ++j) {
      const float s = sigmoid_scalar(g[j]);
      const float d = dh[r * f + j];
      dg[j] = d * u[j] * s * (1.0f + g[j] * (1.0f - s));
      du[j] = d * g[j] * s;
    }
  }
}

// One head's rotary step for position t, rotate-half layout: with s(i) = (i +
// D/2) mod D, y[i] = x[i] c[i] + x[s(i)] S[i], where S holds -sin on the first
// half and +sin on the second. The backward is the transpose (a rotation by
// -angle): dx[i] = dy[i] c[i] + dy[s(i)] S[s(i)]. Plain loops, vectorised by
// the compiler for the target of the function they are inlined into.
__attribute__((always_inline)) inline void rope_head(const float* x, const float* c, const float* S, float* y,
                                                     int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    y[i] = x[i] * c[i] + x[i + half] * S[i];
    y[i + half] = x[i + half] * c[i + half] + x[i] * S[i + half];
  }
}
__attribute__((always_inline)) inline void rope_head_back(const float* dy, const float* c, const float* S, float* dx,
                                                          int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    dx[i] = dy[i] * c[i] + dy[i + half] * S[i + half];
    dx[i + half] = dy[i + half] * c[i + half] + dy[i] * S[i];
  }
}

// Shapes of one rope_qkv call: rows are (b, t) pairs of the (B, T, W) input.
struct RopeDims {
  int64_t batch, len, heads, kv_heads, d;
  int64_t width() const { return (heads + 2 * kv_heads) * d; }
};

// Forward for rows r0..r1: row (b, t) of qkv scatters into q, k, v (B, heads, T, D).
__attribute__((always_inline)) inline void rope_fwd_body(const float* qkv, const float* c, const float* S, float* q,
                                                         float* k, float* v, const RopeDims& m, int64_t r0,
                                                         int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / m.len, t = r % m.len;
    const float* row = qkv + r * m.width();
    const float* ct = c + t * m.d;
    const float* st = S + t * m.d;
    for (int64_t h = 0; h < m.heads; ++h) rope_head(row + h * m.d, ct, st, q + ((b * m.heads + h) * m.len + t) * m.d, m.d);
    for (int64_t h = 0; h < m.kv_heads; ++h) {
      const int64_t dst = ((b * m.kv_heads + h) * m.len + t) * m.d;
      rope_head(row + (m.heads + h) * m.d, ct, st, k + dst, m.d);
      std::memcpy(v + dst, row + (m.heads + m.kv_heads + h) * m.d, static_cast<size_t>(m.d) * sizeof(float));
    }
  }
}

// Backward for rows r0..r1: gathers dq, dk, dv back into row (b, t) of d(qkv).
__attribute__((always_inline)) inline void rope_bwd_body(const float* dq, const float* dk, const float* dv,
                                                         const float* c, const float* S, float* dqkv,
                                                         const RopeDims& m, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / m.len, t = r % m.len;
    float* row = dqkv + r * m.width();
    const float* ct = c + t * m.d;
    const float* st = S + t * m.d;
    for (int64_t h = 0; h < m.heads; ++h)
      rope_head_back(dq + ((b * m.heads + h) * m.len + t) * m.d, ct, st, row + h * m.d, m.d);
    for (int64_t h = 0; h < m.kv_heads; ++h) {
      const int64_t src = ((b * m.kv_heads + h) * m.len + t) * m.d;
      rope_head_back(dk + src, ct, st, row + (m.heads + h) * m.d, m.d);
      std::memcpy(row + (m.heads + m.kv_heads + h) * m.d, dv + src, static_cast<size_t>(m.d) * sizeof(float));
    }
  }
}

void rope_fwd_scalar(const float* qkv, const float* c, const float* S, float* q, float* k, float* v,
                     const RopeDims& m, int64_t r0, int64_t r1) {
  rope_fwd_body(qkv, c, S, q, k, v, m, r0, r1);
}
void rope_bwd_scalar(const float* dq, const float* dk, const float* dv, const float* c, const float* S, float* dqkv,
                     const RopeDims& m, int64_t r0, int64_t r1) {
  rope_bwd_body(dq, dk, dv, c, S, dqkv, m, r0, r1);
}

// ------------------------------------------------------------------ AVX2 ----
#ifdef PLINTH_X86

#define PLINTH_AVX2 __attribute__((target("avx2,fma")))

PLINTH_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Loads n < 8 floats, zero-filling the rest; stores the first n.
PLINTH_AVX2 inline __m256 load_tail(const float* p, int64_t n) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(float));
  return _mm256_load_ps(buf);
}
PLINTH_AVX2 inline void store_tail(float* p, __m256 v, int64_t n) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, v);
  std::memcpy(p, buf, static_cast<size_t>(n) * sizeof(float));
}
PLINTH_AVX2 inline __m256 load(const float* p, int64_t n) { return n >= 8 ? _mm256_loadu_ps(p) : load_tail(p, n); }
PLINTH_AVX2 inline void store(float* p, __m256 v, int64_t n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else
    store_tail(p, v, n);
}

// exp(x) by range reduction to r in [-ln2/2, ln2/2] and a degree-5 minimax
// polynomial (the Cephes expf coefficients), about 1 ulp over the float range.
PLINTH_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365f)), _mm256_set1_ps(88.3762f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

PLINTH_AVX2 inline __m256 sigmoid256(__m256 g) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

PLINTH_AVX2 void rms_fwd_avx2(const float* x, const float* w, float* y, float* inv, int64_t r0, int64_t r1,
                              int64_t c, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < c; j += 8) {
      const __m256 v = load(xr + j, c - j);
      acc = _mm256_fmadd_ps(v, v, acc);
    }
    const float iv = 1.0f / std::sqrt(hsum(acc) / static_cast<float>(c) + eps);
    inv[r] = iv;
    const __m256 viv = _mm256_set1_ps(iv);
    for (int64_t j = 0; j < c; j += 8) {
      const __m256 v = _mm256_mul_ps(_mm256_mul_ps(load(xr + j, c - j), viv), load(w + j, c - j));
      store(y + r * c + j, v, c - j);
    }
  }
}

PLINTH_AVX2 void rms_bwd_avx2(const float* dy, const float* x, const float* w, const float* inv, float* dx,
                              float* dwp, int64_t r0, int64_t r1, int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    const float* dyr = dy + r * c;
    const float iv = inv[r];
    const __m256 viv = _mm256_set1_ps(iv);
    if (dwp != nullptr)
      for (int64_t j = 0; j < c; j += 8) {
        const __m256 t = _mm256_mul_ps(_mm256_mul_ps(load(dyr + j, c - j), load(xr + j, c - j)), viv);
        store(dwp + j, _mm256_add_ps(load(dwp + j, c - j), t), c - j);
      }
    if (dx != nullptr) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t j = 0; j < c; j += 8)
        acc = _mm256_fmadd_ps(_mm256_mul_ps(load(dyr + j, c - j), load(w + j, c - j)), load(xr + j, c - j), acc);
      const __m256 k = _mm256_set1_ps(iv * iv * iv * hsum(acc) / static_cast<float>(c));
      for (int64_t j = 0; j < c; j += 8) {
        const __m256 a = _mm256_mul_ps(_mm256_mul_ps(load(w + j, c - j), load(dyr + j, c - j)), viv);
        store(dx + r * c + j, _mm256_fnmadd_ps(load(xr + j, c - j), k, a), c - j);
      }
    }
  }
}

PLINTH_AVX2 void swiglu_fwd_avx2(const float* gu, float* h, int64_t r0, int64_t r1, int64_t f) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = gu + r * 2 * f;
    const float* u = g + f;
    for (int64_t j = 0; j < f; j += 8) {
      const __m256 vg = load(g + j, f - j);
      const __m256 v = _mm256_mul_ps(_mm256_mul_ps(vg, sigmoid256(vg)), load(u + j, f - j));
      store(h + r * f + j, v, f - j);
    }
  }
}

PLINTH_AVX2 void swiglu_bwd_avx2(const float* dh, const float* gu, float* dgu, int64_t r0, int64_t r1, int64_t f) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = gu + r * 2 * f;
    const float* u = g + f;
    float* dg = dgu + r * 2 * f;
    float* du = dg + f;
    for (int64_t j = 0; j < f; j += 8) {
      const int64_t n = f - j;
      const __m256 vg = load(g + j, n);
      const __m256 s = sigmoid256(vg);
      const __m256 d = load(dh + r * f + j, n);
      // d * u * s * (1 + g * (1 - s))
      const __m256 t = _mm256_fmadd_ps(vg, _mm256_sub_ps(one, s), one);
      store(dg + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, load(u + j, n)), s), t), n);
      store(du + j, _mm256_mul_ps(_mm256_mul_ps(d, vg), s), n);
    }
  }
}

PLINTH_AVX2 void rope_fwd_avx2(const float* qkv, const float* c, const float* S, float* q, float* k, float* v,
                               const RopeDims& m, int64_t r0, int64_t r1) {
  rope_fwd_body(qkv, c, S, q, k, v, m, r0, r1);
}
PLINTH_AVX2 void rope_bwd_avx2(const float* dq, const float* dk, const float* dv, const float* c, const float* S,
                               float* dqkv, const RopeDims& m, int64_t r0, int64_t r1) {
  rope_bwd_body(dq, dk, dv, c, S, dqkv, m, r0, r1);
}

#endif  // PLINTH_X86

// ------------------------------------------------------------- dispatch ----

void rope_fwd(const float* qkv, const float* c, const float* S, float* q, float* k, float* v, const RopeDims& m,
              int64_t r0, int64_t r1) {
#ifdef PLINTH_X86
  if (use_avx2()) return rope_fwd_avx2(qkv, c, S, q, k, v, m, r0, r1);
#endif
  rope_fwd_scalar(qkv, c, S, q, k, v, m, r0, r1);
}

void rope_bwd(const float* dq, const float* dk, const float* dv, const float* c, const float* S, float* dqkv,
              const RopeDims& m, int64_t r0, int64_t r1) {
#ifdef PLINTH_X86
  if (use_avx2()) return rope_bwd_avx2(dq, dk, dv, c, S, dqkv, m, r0, r1);
#endif
  rope_bwd_scalar(dq, dk, dv, c, S, dqkv, m, r0, r1);
}

void rms_fwd(const float* x, const float* w, float* y, float* inv, int64_t r0, int64_t r1, int64_t c, float eps) {
#ifdef PLINTH_X86
  if (use_avx2()) return rms_fwd_avx2(x, w, y, inv, r0, r1, c, eps);
#endif
  rms_fwd_scalar(x, w, y, inv, r0, r1, c, eps);
}

void rms_bwd(const float* dy, const float* x, const float* w, const float* inv, float* dx, float* dwp, int64_t r0,
             int64_t r1, int64_t c) {
#ifdef PLINTH_X86
  if (use_avx2()) return rms_bwd_avx2(dy, x, w, inv, dx, dwp, r0, r1, c);
#endif
  rms_bwd_scalar(dy, x, w, inv, dx, dwp, r0, r1, c);
}

void swiglu_fwd(const float* gu, float* h, int64_t r0, int64_t r1, int64_t f) {
#ifdef PLINTH_X86
  if (use_avx2()) return swiglu_fwd_avx2(gu, h, r0, r1, f);
#endif
  swiglu_fwd_scalar(gu, h, r0, r1, f);
}

void swiglu_bwd(const float* dh, const float* gu, float* dgu, int64_t r0, int64_t r1, int64_t f) {
#ifdef PLINTH_X86
  if (use_avx2()) return swiglu_bwd_avx2(dh, gu, dgu, r0, r1, f);
#endif
  swiglu_bwd_scalar(dh, gu, dgu, r0, r1, f);
}

void check_input(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), what, " must be on the CPU for the fused kernels, not ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, what, " must be float32 for the fused kernels, not ", t.scalar_type());
  TORCH_CHECK(t.dim() >= 1, what, " needs at least one dimension");
}

// --------------------------------------------------- autograd: linear (oneDNN) ----

// Whether oneDNN's float32 matmul runs here and agrees with ATen's `mm` (libtorch
// refuses it on x86 CPUs without AVX-512 BW/VL/DQ or AVX-NE-CONVERT). Probed once,
// on fixed values: drawing random ones would advance the global generator at
// whichever call came first, and runs must not depend on that.
bool onednn_usable() {
  static const bool ok = [] {
    try {
      const at::Tensor a = at::arange(48 * 40, at::kFloat).reshape({48, 40}).sin();
      const at::Tensor b = at::arange(24 * 40, at::kFloat).reshape({24, 40}).cos();
      const at::Tensor c = at::empty({48, 24});
      at::native::mkldnn_matmul(a, b.t(), c, 0.f, 1.f);
      return (c - at::mm(a, b.t())).abs().max().item<float>() < 1e-3f;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return ok;
}

// out = a @ b through oneDNN; a and b contiguous or transposed 2-D views.
void onednn_mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out) {
  if (out.numel() == 0) return;
  if (a.size(1) == 0) {
    out.zero_();
    return;
  }
  at::native::mkldnn_matmul(a, b, out, 0.f, 1.f);
}

// y = x @ w^T over the last dimension of x, every GEMM (forward, input and
// weight gradients) on oneDNN instead of the BLAS ATen's `linear` calls. A bias
// is added outside (autograd's own add), as libtorch functions take no
// undefined tensor inputs.
struct LinearFn : public torch::autograd::Function<LinearFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w_in) {
    check_input(x, "the linear map's input");
    check_input(w_in, "the linear map's weight");
    TORCH_CHECK(w_in.dim() == 2 && w_in.size(1) == x.size(-1), "the weight ", w_in.sizes(),
                " does not map rows of width ", x.size(-1));
    const at::Tensor w = w_in.contiguous();
    const int64_t k = x.size(-1), n = w.size(0);
    const at::Tensor x2 = x.reshape({-1, k}).contiguous();
    at::Tensor y = at::empty({x2.size(0), n}, x.options());
    onednn_mm(x2, w.t(), y);
    ctx->save_for_backward({x2, w});
    auto shape = x.sizes().vec();
    shape.back() = n;
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x2 = saved[0];
    const at::Tensor& w = saved[1];
    const int64_t n = w.size(0), k = w.size(1);
    const at::Tensor dy = grads[0].reshape({-1, n}).contiguous();
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty({x2.size(0), k}, dy.options());
      onednn_mm(dy, w, dx);
      auto shape = grads[0].sizes().vec();
      shape.back() = k;
      dx = dx.view(shape);
    }
    if (ctx->needs_input_grad(1)) {
      dw = at::empty({n, k}, dy.options());
      onednn_mm(dy.t(), x2, dw);
    }
    return {dx, dw};
  }
};

// ------------------------------------------------------ autograd: RMSNorm ----

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
    check_input(x_in, "the norm's input");
    check_input(w_in, "the norm's weight");
    const at::Tensor x = x_in.contiguous();
    const at::Tensor w = w_in.contiguous();
    const int64_t c = x.size(-1);
    TORCH_CHECK(w.numel() == c, "the norm's weight has ", w.numel(), " entries for rows of ", c);
    const int64_t rows = x.numel() / std::max<int64_t>(c, 1);
    at::Tensor y = at::empty_like(x);
    at::Tensor inv = at::empty({rows}, x.options());
    const float* px = x.const_data_ptr<float>();
    const float* pw = w.const_data_ptr<float>();
    float* py = y.data_ptr<float>();
    float* pinv = inv.data_ptr<float>();
    const float e = static_cast<float>(eps);
    at::parallel_for(0, rows, grain_rows(c), [&](int64_t r0, int64_t r1) { rms_fwd(px, pw, py, pinv, r0, r1, c, e); });
    ctx->save_for_backward({x, w, inv});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& inv = saved[2];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t c = x.size(-1);
    const int64_t rows = x.numel() / std::max<int64_t>(c, 1);
    const bool want_dx = ctx->needs_input_grad(0);
    const bool want_dw = ctx->needs_input_grad(1);
    at::Tensor dx = want_dx ? at::empty_like(x) : at::Tensor();
    const int64_t blocks = (rows + kReduceRows - 1) / kReduceRows;
    at::Tensor partial = want_dw ? at::zeros({std::max<int64_t>(blocks, 1), c}, x.options()) : at::Tensor();
    const float* pdy = dy.const_data_ptr<float>();
    const float* px = x.const_data_ptr<float>();
    const float* pw = w.const_data_ptr<float>();
    const float* pinv = inv.const_data_ptr<float>();
    float* pdx = want_dx ? dx.data_ptr<float>() : nullptr;
    float* pp = want_dw ? partial.data_ptr<float>() : nullptr;
    at::parallel_for(0, blocks, std::max<int64_t>(1, grain_rows(c) / kReduceRows), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * kReduceRows;
        const int64_t r1 = std::min(rows, r0 + kReduceRows);
        rms_bwd(pdy, px, pw, pinv, pdx, pp == nullptr ? nullptr : pp + b * c, r0, r1, c);
      }
    });
    at::Tensor dw = want_dw ? partial.sum(0) : at::Tensor();
    return {dx, dw, at::Tensor()};
  }
};

// ------------------------------------------------------- autograd: SwiGLU ----

struct SwiGluFn : public torch::autograd::Function<SwiGluFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gu_in) {
    check_input(gu_in, "the gate/up output");
    const at::Tensor gu = gu_in.contiguous();
    const int64_t two_f = gu.size(-1);
    TORCH_CHECK(two_f % 2 == 0, "the gate/up output's last dimension (", two_f, ") must be even: [gate | up]");
    const int64_t f = two_f / 2;
    const int64_t rows = gu.numel() / std::max<int64_t>(two_f, 1);
    auto shape = gu.sizes().vec();
    shape.back() = f;
    at::Tensor h = at::empty(shape, gu.options());
    const float* pgu = gu.const_data_ptr<float>();
    float* ph = h.data_ptr<float>();
    at::parallel_for(0, rows, grain_rows(two_f), [&](int64_t r0, int64_t r1) { swiglu_fwd(pgu, ph, r0, r1, f); });
    ctx->save_for_backward({gu});
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor gu = ctx->get_saved_variables()[0];
    const at::Tensor dh = grads[0].contiguous();
    const int64_t two_f = gu.size(-1);
    const int64_t f = two_f / 2;
    const int64_t rows = gu.numel() / std::max<int64_t>(two_f, 1);
    at::Tensor dgu = at::empty_like(gu);
    const float* pdh = dh.const_data_ptr<float>();
    const float* pgu = gu.const_data_ptr<float>();
    float* pdgu = dgu.data_ptr<float>();
    at::parallel_for(0, rows, grain_rows(two_f),
                     [&](int64_t r0, int64_t r1) { swiglu_bwd(pdh, pgu, pdgu, r0, r1, f); });
    return {dgu};
  }
};

// ----------------------------------------------------- autograd: rotary ----

struct RopeQkvFn : public torch::autograd::Function<RopeQkvFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& qkv_in, const at::Tensor& cos_in,
                               const at::Tensor& sin_in, int64_t heads, int64_t kv_heads) {
    check_input(qkv_in, "the q/k/v output");
    check_input(cos_in, "the rotary cosine table");
    check_input(sin_in, "the rotary sine table");
    TORCH_CHECK(qkv_in.dim() == 3, "the q/k/v output must be (batch, time, width), not ", qkv_in.sizes());
    const at::Tensor qkv = qkv_in.contiguous();
    const at::Tensor cos = cos_in.contiguous();
    const at::Tensor sin = sin_in.contiguous();
    const int64_t len = qkv.size(1);
    TORCH_CHECK(heads > 0 && kv_heads > 0 && qkv.size(2) % (heads + 2 * kv_heads) == 0, "width ", qkv.size(2),
                " does not split into ", heads, " query and 2 x ", kv_heads, " key/value heads");
    const RopeDims m{qkv.size(0), len, heads, kv_heads, qkv.size(2) / (heads + 2 * kv_heads)};
    TORCH_CHECK(m.d % 2 == 0, "rotary needs an even head width, not ", m.d);
    TORCH_CHECK(cos.dim() == 2 && cos.size(0) == len && cos.size(1) == m.d && sin.sizes() == cos.sizes(),
                "the rotary tables must be (", len, ", ", m.d, "), not ", cos.sizes(), " and ", sin.sizes());
    at::Tensor q = at::empty({m.batch, heads, len, m.d}, qkv.options());
    at::Tensor k = at::empty({m.batch, kv_heads, len, m.d}, qkv.options());
    at::Tensor v = at::empty({m.batch, kv_heads, len, m.d}, qkv.options());
    const float* px = qkv.const_data_ptr<float>();
    const float* pc = cos.const_data_ptr<float>();
    const float* ps = sin.const_data_ptr<float>();
    float* pq = q.data_ptr<float>();
    float* pk = k.data_ptr<float>();
    float* pv = v.data_ptr<float>();
    at::parallel_for(0, m.batch * len, grain_rows(m.width()),
                     [&](int64_t r0, int64_t r1) { rope_fwd(px, pc, ps, pq, pk, pv, m, r0, r1); });
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["batch"] = m.batch;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["kv_heads"] = kv_heads;
    ctx->saved_data["d"] = m.d;
    return {q, k, v};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const RopeDims m{ctx->saved_data["batch"].toInt(), saved[0].size(0), ctx->saved_data["heads"].toInt(),
                     ctx->saved_data["kv_heads"].toInt(), ctx->saved_data["d"].toInt()};
    const at::Tensor dq = grads[0].contiguous();
    const at::Tensor dk = grads[1].contiguous();
    const at::Tensor dv = grads[2].contiguous();
    at::Tensor dqkv = at::empty({m.batch, m.len, m.width()}, dq.options());
    const float* pdq = dq.const_data_ptr<float>();
    const float* pdk = dk.const_data_ptr<float>();
    const float* pdv = dv.const_data_ptr<float>();
    const float* pc = saved[0].const_data_ptr<float>();
    const float* ps = saved[1].const_data_ptr<float>();
    float* pout = dqkv.data_ptr<float>();
    at::parallel_for(0, m.batch * m.len, grain_rows(m.width()),
                     [&](int64_t r0, int64_t r1) { rope_bwd(pdq, pdk, pdv, pc, ps, pout, m, r0, r1); });
    return {dqkv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The message without libtorch's C++ stack trace, which says nothing to a user.
void set_error(const std::exception& e, char* err, size_t err_len) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  const char* what = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  if (err != nullptr && err_len > 0) {
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
  }
}

}  // namespace

// 1 when the kernels run vectorised (this CPU has AVX2 and FMA) and on ATen's
// OpenMP pool (built with libtorch's OpenMP), else 0: the scalar or serial
// fallback is correct but slower than ATen's own ops.
extern "C" int plinth_fused_layers_fast() {
#ifdef _OPENMP
  return use_avx2() ? 1 : 0;
#else
  return 0;
#endif
}

// 1 when oneDNN's float32 matmul runs on this CPU (see onednn_usable), else 0.
extern "C" int plinth_onednn_usable() { return onednn_usable() ? 1 : 0; }

// `bias` may be null.
extern "C" int plinth_linear(const at::Tensor* x, const at::Tensor* w, const at::Tensor* bias, at::Tensor** out,
                             char* err, size_t err_len) {
  try {
    at::Tensor y = LinearFn::apply(*x, *w);
    *out = new at::Tensor(bias != nullptr ? y + *bias : y);
    return 0;
  } catch (const std::exception& e) {
    set_error(e, err, err_len);
  }
  return 1;
}

extern "C" int plinth_rms_norm(const at::Tensor* x, const at::Tensor* w, double eps, at::Tensor** out, char* err,
                               size_t err_len) {
  try {
    *out = new at::Tensor(RmsNormFn::apply(*x, *w, eps));
    return 0;
  } catch (const std::exception& e) {
    set_error(e, err, err_len);
  }
  return 1;
}

extern "C" int plinth_swiglu(const at::Tensor* gu, at::Tensor** out, char* err, size_t err_len) {
  try {
    *out = new at::Tensor(SwiGluFn::apply(*gu));
    return 0;
  } catch (const std::exception& e) {
    set_error(e, err, err_len);
  }
  return 1;
}

extern "C" int plinth_rope_qkv(const at::Tensor* qkv, const at::Tensor* cos, const at::Tensor* sin, int64_t heads,
                               int64_t kv_heads, at::Tensor** q, at::Tensor** k, at::Tensor** v, char* err,
                               size_t err_len) {
  try {
    auto out = RopeQkvFn::apply(*qkv, *cos, *sin, heads, kv_heads);
    *q = new at::Tensor(out[0]);
    *k = new at::Tensor(out[1]);
    *v = new at::Tensor(out[2]);
    return 0;
  } catch (const std::exception& e) {
    set_error(e, err, err_len);
  }
  return 1;
}
