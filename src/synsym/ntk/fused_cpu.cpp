// Fused CPU kernel for synsym.ntk.engine: the whole depth-L conv-family recursion
// for one (image pair, offset delta) at a time, in L1 cache.
//
// Why this is exact and independent per (pair, delta): in the K[pair, delta, a]
// layout (b = a + delta), a circular stride-1 conv layer averages K over
// shifts of a at fixed delta, and the ReLU's arc-cosine map is pointwise in
// (a, delta) given the pixel variances. So the s x s image of one (pair, delta)
// goes through all L layers without touching any other, and only its readouts
// (a few numbers per pair) are written back. The eager torch path makes ~30
// passes over the (pairs x d x d) kernels per layer; this never stores them.
//
// Built on first use by synsym.ntk.fused_cpu via torch.utils.cpp_extension.load_inline
// (-O3 -ffast-math -fopenmp-simd, so glibc's libmvec supplies vector acos).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// out = scale * (circular 3x3 box sum of x over an s x s image) + add (+ add2[a] if given)
template <typename T>
inline void box(const T* x, T* out, T* tmp, int64_t s, T scale, T add, const T* add2) {
  for (int64_t h = 0; h < s; ++h) {
    const T* up = x + ((h + s - 1) % s) * s;
    const T* mid = x + h * s;
    const T* dn = x + ((h + 1) % s) * s;
    T* t = tmp + h * s;
#pragma omp simd
    for (int64_t w = 0; w < s; ++w) t[w] = up[w] + mid[w] + dn[w];
  }
  for (int64_t h = 0; h < s; ++h) {
    const T* t = tmp + h * s;
    T* o = out + h * s;
    o[0] = scale * (t[s - 1] + t[0] + t[1 % s]) + add;  // wrap-around ends, then a vector loop
#pragma omp simd
    for (int64_t w = 1; w < s - 1; ++w) o[w] = scale * (t[w - 1] + t[w] + t[w + 1]) + add;
    if (s > 1) o[s - 1] = scale * (t[s - 2] + t[s - 1] + t[0]) + add;
    if (add2 != nullptr) {
      const T* a2 = add2 + h * s;
#pragma omp simd
      for (int64_t w = 0; w < s; ++w) o[w] += a2[w];
    }
  }
}

// Zero padding: out = scale * (3x3 box sum of x over an hr x wr rectangle, zeros outside) + add (+ add2[a]).
// At fixed delta the valid pixels a (those with a + delta inside the image) form such a rectangle, and
// every K entry outside it is zero, so the rectangle alone is one zero-padded conv layer.
template <typename T>
inline void box_rect(const T* x, T* out, T* tmp, int64_t hr, int64_t wr, T scale, T add, const T* add2) {
  for (int64_t h = 0; h < hr; ++h) {
    const T* mid = x + h * wr;
    T* t = tmp + h * wr;
    if (h > 0 && h + 1 < hr) {
      const T* up = mid - wr;
      const T* dn = mid + wr;
#pragma omp simd
      for (int64_t w = 0; w < wr; ++w) t[w] = up[w] + mid[w] + dn[w];
    } else {
      for (int64_t w = 0; w < wr; ++w) t[w] = mid[w] + (h > 0 ? mid[w - wr] : T(0)) + (h + 1 < hr ? mid[w + wr] : T(0));
    }
  }
  for (int64_t h = 0; h < hr; ++h) {
    const T* t = tmp + h * wr;
    T* o = out + h * wr;
    o[0] = scale * (t[0] + (wr > 1 ? t[1] : T(0))) + add;
#pragma omp simd
    for (int64_t w = 1; w < wr - 1; ++w) o[w] = scale * (t[w - 1] + t[w] + t[w + 1]) + add;
    if (wr > 1) o[wr - 1] = scale * (t[wr - 2] + t[wr - 1]) + add;
    if (add2 != nullptr) {
      const T* a2 = add2 + h * wr;
#pragma omp simd
      for (int64_t w = 0; w < wr; ++w) o[w] += a2[w];
    }
  }
}

// The recursion runs in T; the readouts (weights w, sums pk and pt) are always double, so a float
// recursion (kernels.precision: float32) still sums its s^4 elements per pair in double.
template <typename T>
void run(const T* f1, const T* f2g, const T* sv1, const T* r2b, const double* w, double* pk, double* pt, int64_t n1,
         int64_t n2, int64_t D, int64_t s, int64_t C, int64_t L, int64_t R, bool sym, T sw2, T sb2) {
  const int64_t A = s * s;
  const T scale = sw2 / T(9), inv2pi = T(1) / T(2 * M_PI), pi = T(M_PI);
  // one task per image pair: its D offsets run one after another and its readouts
  // accumulate locally, so threads never write the same output
  at::parallel_for(0, n1 * n2, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> k(A), n(A), kb(A), nb(A), tmp(A);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j = p % n2, i = p / n2;
      std::fill(pk + p * R, pk + (p + 1) * R, 0.0);
      std::fill(pt + p * R, pt + (p + 1) * R, 0.0);
      for (int64_t delta = 0; delta < D; ++delta) {
        const bool exact = sym && i == j && delta == 0;  // K(x, x) at a = b: correlation exactly 1
        const T* x1 = f1 + i * A * C;                    // (A, C), already divided by C
        const T* x2 = f2g + (j * D + delta) * A * C;     // x2 at pixel a + delta, (A, C)
        for (int64_t a = 0; a < A; ++a) {
          T acc = T(0);
          for (int64_t c = 0; c < C; ++c) acc += x1[a * C + c] * x2[a * C + c];
          k[a] = acc;
        }
        std::fill(n.begin(), n.end(), T(0));
        for (int64_t l = 0; l < L; ++l) {
          box(k.data(), kb.data(), tmp.data(), s, scale, sb2, static_cast<const T*>(nullptr));
          box(n.data(), nb.data(), tmp.data(), s, scale, T(0), kb.data());
          const T* a1 = sv1 + (l * n1 + i) * A;
          const T* b2 = r2b + ((l * n2 + j) * D + delta) * A;
          T* kp = k.data();
          T* np = n.data();
          const T* kbp = kb.data();
          const T* nbp = nb.data();
          if (exact) {
            for (int64_t a = 0; a < A; ++a) {  // theta = 0: pi - theta = pi, sin = 0
              kp[a] = a1[a] * b2[a] * pi * inv2pi;
              np[a] = nbp[a] * pi * inv2pi;
            }
            continue;
          }
#pragma omp simd
          for (int64_t a = 0; a < A; ++a) {
            const T q = a1[a] * b2[a];
            T c = kbp[a] / q;
            c = c > T(1) ? T(1) : (c < T(-1) ? T(-1) : c);
            const T pm = pi - std::acos(c);
            const T sn = std::sqrt(std::max(T(1) - c * c, T(0)));
            kp[a] = q * (sn + pm * c) * inv2pi;
            np[a] = nbp[a] * pm * inv2pi;
          }
        }
        const double* wd = w + delta * A * R;  // readout weights at this offset, (A, R)
        for (int64_t r = 0; r < R; ++r) {
          double sk = 0.0, sn = 0.0;
          for (int64_t a = 0; a < A; ++a) {
            sk += wd[a * R + r] * static_cast<double>(k[a]);
            sn += wd[a * R + r] * static_cast<double>(n[a]);
          }
          pk[p * R + r] += sk;
          pt[p * R + r] += sn;
        }
      }
    }
  });
}

// The zero-padded recursion: delta = (dh, dw) in [-(s-1), s-1]^2 (D = (2s-1)^2), each slice only the
// (s - |dh|) x (s - |dw|) rectangle of valid a, so the work is s^4 elements per pair as in the circular
// layout. Inputs are per pixel (no gathered copies): f2 (n2, A, C), sv2 (L, n2, A).
template <typename T>
void run_zero(const T* f1, const T* f2, const T* sv1, const T* sv2, const double* w, double* pk, double* pt,
              int64_t n1, int64_t n2, int64_t s, int64_t C, int64_t L, int64_t R, bool sym, T sw2, T sb2) {
  const int64_t A = s * s, S2 = 2 * s - 1, D = S2 * S2;
  const T scale = sw2 / T(9), inv2pi = T(1) / T(2 * M_PI), pi = T(M_PI);
  at::parallel_for(0, n1 * n2, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> k(A), n(A), kb(A), nb(A), tmp(A), q(A);
    std::vector<int64_t> pa(A);  // the rectangle's pixels a
    for (int64_t p = begin; p < end; ++p) {
      const int64_t j = p % n2, i = p / n2;
      std::fill(pk + p * R, pk + (p + 1) * R, 0.0);
      std::fill(pt + p * R, pt + (p + 1) * R, 0.0);
      for (int64_t e = 0; e < D; ++e) {
        const int64_t dh = e / S2 - (s - 1), dw = e % S2 - (s - 1);
        const int64_t h0 = std::max<int64_t>(0, -dh), w0 = std::max<int64_t>(0, -dw);
        const int64_t hr = s - std::abs(dh), wr = s - std::abs(dw), E = hr * wr, off = dh * s + dw;
        const bool exact = sym && i == j && dh == 0 && dw == 0;
        const T* x1 = f1 + i * A * C;
        const T* x2 = f2 + j * A * C;
        for (int64_t r = 0; r < hr; ++r)
          for (int64_t c = 0; c < wr; ++c) pa[r * wr + c] = (h0 + r) * s + w0 + c;
        for (int64_t u = 0; u < E; ++u) {
          const int64_t a = pa[u];
          T acc = T(0);
          for (int64_t c = 0; c < C; ++c) acc += x1[a * C + c] * x2[(a + off) * C + c];
          k[u] = acc;
        }
        std::fill(n.begin(), n.begin() + E, T(0));
        for (int64_t l = 0; l < L; ++l) {
          box_rect(k.data(), kb.data(), tmp.data(), hr, wr, scale, sb2, static_cast<const T*>(nullptr));
          box_rect(n.data(), nb.data(), tmp.data(), hr, wr, scale, T(0), kb.data());
          const T* a1 = sv1 + (l * n1 + i) * A;
          const T* b2 = sv2 + (l * n2 + j) * A;
          for (int64_t u = 0; u < E; ++u) q[u] = a1[pa[u]] * b2[pa[u] + off];
          T* kp = k.data();
          T* np = n.data();
          const T* kbp = kb.data();
          const T* nbp = nb.data();
          const T* qp = q.data();
          if (exact) {
            for (int64_t u = 0; u < E; ++u) {
              kp[u] = qp[u] * pi * inv2pi;
              np[u] = nbp[u] * pi * inv2pi;
            }
            continue;
          }
#pragma omp simd
          for (int64_t u = 0; u < E; ++u) {
            T c = kbp[u] / qp[u];
            c = c > T(1) ? T(1) : (c < T(-1) ? T(-1) : c);
            const T pm = pi - std::acos(c);
            const T sn = std::sqrt(std::max(T(1) - c * c, T(0)));
            kp[u] = qp[u] * (sn + pm * c) * inv2pi;
            np[u] = nbp[u] * pm * inv2pi;
          }
        }
        const double* wd = w + e * A * R;  // (A, R), indexed by the full image's pixel a
        for (int64_t r = 0; r < R; ++r) {
          double sk = 0.0, sn = 0.0;
          for (int64_t u = 0; u < E; ++u) {
            sk += wd[pa[u] * R + r] * static_cast<double>(k[u]);
            sn += wd[pa[u] * R + r] * static_cast<double>(n[u]);
          }
          pk[p * R + r] += sk;
          pt[p * R + r] += sn;
        }
      }
    }
  });
}

}  // namespace

// f1 (n1, A, C): x1's pixels / C; f2g (n2, D, A, C): x2's pixel a + delta; sv1 (L, n1, A) and
// r2b (L, n2, D, A): sqrt of the pixel variances after each layer's conv at a and at a + delta;
// w (D, A, R): readout weights. Returns (sum_{delta,a} w K_L, sum w Theta_L), each (n1, n2, R) in double,
// after L conv + ReLU layers. The (n1, n2, D, A) kernels are never stored.
std::vector<torch::Tensor> conv_stack(torch::Tensor f1, torch::Tensor f2g, torch::Tensor sv1, torch::Tensor r2b,
                                      torch::Tensor w, bool sym, double sw2, double sb2) {
  TORCH_CHECK(f1.dim() == 3 && f2g.dim() == 4 && sv1.dim() == 3 && r2b.dim() == 4 && w.dim() == 3, "conv_stack: bad ranks");
  TORCH_CHECK(f1.device().is_cpu(), "conv_stack: CPU tensors only");
  const auto dt = f1.scalar_type();
  f1 = f1.contiguous();
  f2g = f2g.contiguous().to(dt);
  sv1 = sv1.contiguous().to(dt);
  r2b = r2b.contiguous().to(dt);
  w = w.contiguous().to(torch::kDouble);
  const int64_t n1 = f1.size(0), A = f1.size(1), C = f1.size(2), n2 = f2g.size(0), D = f2g.size(1);
  const int64_t L = sv1.size(0), R = w.size(2);
  const int64_t s = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(A))));
  TORCH_CHECK(s * s == A && f2g.size(2) == A && f2g.size(3) == C && sv1.size(1) == n1 && sv1.size(2) == A &&
                  r2b.size(0) == L && r2b.size(1) == n2 && r2b.size(2) == D && r2b.size(3) == A && w.size(0) == D &&
                  w.size(1) == A,
              "conv_stack: shape mismatch");
  auto pk = torch::empty({n1, n2, R}, f1.options().dtype(torch::kDouble)), pt = torch::empty_like(pk);
  AT_DISPATCH_FLOATING_TYPES(dt, "conv_stack", [&] {
    run<scalar_t>(f1.data_ptr<scalar_t>(), f2g.data_ptr<scalar_t>(), sv1.data_ptr<scalar_t>(), r2b.data_ptr<scalar_t>(),
                  w.data_ptr<double>(), pk.data_ptr<double>(), pt.data_ptr<double>(), n1, n2, D, s, C, L, R, sym,
                  static_cast<scalar_t>(sw2), static_cast<scalar_t>(sb2));
  });
  return {pk, pt};
}

// Zero padding (neural-tangents' SAME): f1 (n1, A, C) / C, f2 (n2, A, C), sv1 (L, n1, A), sv2 (L, n2, A),
// w (D, A, R) with D = (2s-1)^2 offsets (synsym.ntk.eager.offset_layout's order). Returns as conv_stack.
std::vector<torch::Tensor> conv_stack_zero(torch::Tensor f1, torch::Tensor f2, torch::Tensor sv1, torch::Tensor sv2,
                                           torch::Tensor w, bool sym, double sw2, double sb2) {
  TORCH_CHECK(f1.dim() == 3 && f2.dim() == 3 && sv1.dim() == 3 && sv2.dim() == 3 && w.dim() == 3,
              "conv_stack_zero: bad ranks");
  TORCH_CHECK(f1.device().is_cpu(), "conv_stack_zero: CPU tensors only");
  const auto dt = f1.scalar_type();
  f1 = f1.contiguous();
  f2 = f2.contiguous().to(dt);
  sv1 = sv1.contiguous().to(dt);
  sv2 = sv2.contiguous().to(dt);
  w = w.contiguous().to(torch::kDouble);
  const int64_t n1 = f1.size(0), A = f1.size(1), C = f1.size(2), n2 = f2.size(0), L = sv1.size(0), R = w.size(2);
  const int64_t s = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(A))));
  TORCH_CHECK(s * s == A && f2.size(1) == A && f2.size(2) == C && sv1.size(1) == n1 && sv1.size(2) == A &&
                  sv2.size(0) == L && sv2.size(1) == n2 && sv2.size(2) == A && w.size(0) == (2 * s - 1) * (2 * s - 1) &&
                  w.size(1) == A,
              "conv_stack_zero: shape mismatch");
  auto pk = torch::empty({n1, n2, R}, f1.options().dtype(torch::kDouble)), pt = torch::empty_like(pk);
  AT_DISPATCH_FLOATING_TYPES(dt, "conv_stack_zero", [&] {
    run_zero<scalar_t>(f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), sv1.data_ptr<scalar_t>(),
                       sv2.data_ptr<scalar_t>(), w.data_ptr<double>(), pk.data_ptr<double>(), pt.data_ptr<double>(), n1,
                       n2, s, C, L, R, sym, static_cast<scalar_t>(sw2), static_cast<scalar_t>(sb2));
  });
  return {pk, pt};
}
