/* fp32 math kernels (layer norm, erf/GELU, exp/softmax, depthwise 3x3): mirrors torch.nn.LayerNorm,
 * nn.GELU() (exact erf), torch.softmax and nn.Conv2d(groups=C, k=3, p=1) on channels-last data.
 * Every kernel is one portable body (`*_body`, always inlined) written so clang vectorizes it;
 * on x86-64 it is instantiated three times (plain C = the reference, AVX2+FMA, AVX-512) and
 * the entry point dispatches on a level chosen once from the CPU. Results of the variants differ
 * only by FMA contraction (summation orders are fixed by the source: 16 partial sums). */
#include "ock_ops.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdatomic.h>

/* MARK: - Variant selection */

static atomic_int ock_forced = -1;   /* -1: automatic */
static atomic_int ock_detected = -1; /* -1: not yet detected */

static int ock_detect(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

static int ock_level(void) {
    int d = atomic_load_explicit(&ock_detected, memory_order_relaxed);
    if (d < 0) { d = ock_detect(); atomic_store_explicit(&ock_detected, d, memory_order_relaxed); }
    int f = atomic_load_explicit(&ock_forced, memory_order_relaxed);
    return (f >= 0 && f < d) ? f : d;
}

int ock_ops_isa(void) { return ock_level(); }

void ock_ops_force_isa(int level) { atomic_store_explicit(&ock_forced, level < 0 ? -1 : level, memory_order_relaxed); }

const char *ock_ops_isa_name(int level) {
    switch (level) { case 2: return "avx512"; case 1: return "avx2"; default: return "generic"; }
}

#define OCK_INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__)
#define OCK_AVX2 __attribute__((target("avx2,fma")))
#define OCK_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"), \
                                  min_vector_width(512)))
/* Defines NAME_generic/_avx2/_avx512 from NAME_body and a dispatching entry point NAME. */
#define OCK_VARIANTS(RET, NAME, PARAMS, ARGS)                                   \
    static RET NAME##_generic PARAMS { return NAME##_body ARGS; }              \
    OCK_AVX2 static RET NAME##_avx2 PARAMS { return NAME##_body ARGS; }        \
    OCK_AVX512 static RET NAME##_avx512 PARAMS { return NAME##_body ARGS; }    \
    RET NAME PARAMS {                                                          \
        switch (ock_level()) {                                                 \
        case 2: return NAME##_avx512 ARGS;                                     \
        case 1: return NAME##_avx2 ARGS;                                       \
        default: return NAME##_generic ARGS;                                   \
        }                                                                      \
    }
#else
#define OCK_VARIANTS(RET, NAME, PARAMS, ARGS) RET NAME PARAMS { return NAME##_body ARGS; }
#endif

/* MARK: - Scalar building blocks (inlined into vector loops) */

OCK_INLINE float ock_f32(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
OCK_INLINE int32_t ock_i32(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* exp(x): x = n·ln2 + r with |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation
 * < 6e-9 relative), 2^n from the exponent bits. Round-to-nearest via the 1.5·2^23 shifter. */
OCK_INLINE float ock_exp1(float x) {
    const float hi = 88.0f, lo = -87.33654f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    const float shifter = 12582912.0f; /* 1.5·2^23 */
    float t = xc * 1.44269504088896341f + shifter;
    float n = t - shifter;
    int32_t ni = ock_i32(t) - ock_i32(shifter);
    float r = xc - n * 0.693145751953125f;  /* ln2 split: hi part exact in 16 bits */
    r = r - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    float y = p * ock_f32((ni + 127) << 23);
    y = x < lo ? 0.0f : y;
    y = x > 88.72283f ? INFINITY : y;
    return x != x ? x : y;
}

/* erf(z)/z = P(z²) on |z| < 1: degree-6 least-squares fit at Chebyshev nodes (numpy, float64;
 * |erf error| 1.2e-9 before fp32 rounding). */
OCK_INLINE float ock_erf_small(float z) {
    float u = z * z;
    float p = 7.882500358e-05f;
    p = p * u + -8.018859080e-04f;
    p = p * u + 5.189312622e-03f;
    p = p * u + -2.685432881e-02f;
    p = p * u + 1.128359735e-01f;
    p = p * u + -3.761262596e-01f;
    p = p * u + 1.128379107e+00f;
    return z * p;
}

/* erfc(a) for a >= 0 as exp(-a²)·R(t), t = 1/(1 + 0.47·a): R of degree 11 in t, a least-squares
 * fit to erfcx(a) at 8000 Chebyshev nodes of t in (0, 1] (numpy float64; |erfc error| 2.9e-9 with
 * the fp32 coefficients, before fp32 evaluation). Underflows cleanly to 0 beyond a ≈ 9.3 and for
 * a = inf. (Used for |z| >= 1 in erf; for all z in GELU, where x·erfc keeps full accuracy.) */
OCK_INLINE float ock_erfc(float a) {
    float t = 1.0f / (1.0f + 0.47f * a);
    float p = 3.211470693e-02f;
    p = p * t + -2.025805116e-01f;
    p = p * t + 5.114696622e-01f;
    p = p * t + -6.164802313e-01f;
    p = p * t + 3.235960305e-01f;
    p = p * t + -1.222986206e-01f;
    p = p * t + 1.361151040e-01f;
    p = p * t + 1.712972820e-01f;
    p = p * t + 2.364563048e-01f;
    p = p * t + 2.651406229e-01f;
    p = p * t + 2.651696503e-01f;
    p = p * t + -1.794714488e-09f;
    return p * ock_exp1(-a * a);
}
OCK_INLINE float ock_erf1(float x) {
    float a = fabsf(x);
    float small = ock_erf_small(x);
    float big = 1.0f - ock_erfc(a);
    big = copysignf(big, x);
    float y = a < 1.0f ? small : big;
    return x != x ? x : y;
}

/* GELU(x) = x·Φ(x) = 0.5·x·erfc(-x/√2), evaluated as x - 0.5·x·erfc(z) for x > 0 and
 * 0.5·x·erfc(|z|) for x <= 0 (z = x/√2), so no 1 ± erf cancellation occurs anywhere. */
OCK_INLINE float ock_gelu1(float x) {
    float z = x * 0.70710678118654752f;
    float a = fabsf(z);
    float hx = 0.5f * x;
    float q = ock_erfc(a);
    float y = x > 0.0f ? x - hx * q : hx * q;
    y = x > 10.0f ? x : y;
    y = x < -10.0f ? -0.0f : y;
    return y;   /* NaN: every comparison is false and the arithmetic propagates it */
}

/* MARK: - Element-wise math */

OCK_INLINE void ock_gelu_f32_body(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = ock_gelu1(x[i]);
}
OCK_VARIANTS(void, ock_gelu_f32, (float *x, size_t n), (x, n))

OCK_INLINE void ock_erf_f32_body(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ock_erf1(x[i]);
}
OCK_VARIANTS(void, ock_erf_f32, (const float *x, float *y, size_t n), (x, y, n))

OCK_INLINE void ock_exp_f32_body(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ock_exp1(x[i]);
}
OCK_VARIANTS(void, ock_exp_f32, (const float *x, float *y, size_t n), (x, y, n))

/* MARK: - Reductions (16 fixed partial sums, same order in every variant) */

#define OCK_LANES 16

OCK_INLINE float ock_hsum(const float *acc) {
    float s8[8], s4[4];
    for (int k = 0; k < 8; k++) s8[k] = acc[k] + acc[k + 8];
    for (int k = 0; k < 4; k++) s4[k] = s8[k] + s8[k + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

OCK_INLINE float ock_sum(const float *x, size_t n) {
    float acc[OCK_LANES] = {0};
    size_t j = 0;
    for (; j + OCK_LANES <= n; j += OCK_LANES)
        for (int k = 0; k < OCK_LANES; k++) acc[k] += x[j + k];
    for (int k = 0; j < n; j++, k++) acc[k] += x[j];
    return ock_hsum(acc);
}

OCK_INLINE float ock_sum_sq_dev(const float *x, size_t n, float mean) {
    float acc[OCK_LANES] = {0};
    size_t j = 0;
    for (; j + OCK_LANES <= n; j += OCK_LANES)
        for (int k = 0; k < OCK_LANES; k++) { float d = x[j + k] - mean; acc[k] += d * d; }
    for (int k = 0; j < n; j++, k++) { float d = x[j] - mean; acc[k] += d * d; }
    return ock_hsum(acc);
}

/* MARK: - Layer norm */

OCK_INLINE void ock_layernorm_f32_body(const float *x, float *y, const float *w, const float *b,
                                       size_t C, float eps, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mean = ock_sum(xr, C) / (float)C;
        float var = ock_sum_sq_dev(xr, C, mean) / (float)C;
        float rstd = 1.0f / sqrtf(var + eps);
        for (size_t j = 0; j < C; j++) yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
    }
}
OCK_VARIANTS(void, ock_layernorm_f32,
             (const float *x, float *y, const float *w, const float *b, size_t C, float eps, size_t r0, size_t r1),
             (x, y, w, b, C, eps, r0, r1))

/* MARK: - Softmax */

OCK_INLINE void ock_softmax_f32_body(float *x, size_t N, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        float *xr = x + r * N;
        float m[OCK_LANES];
        for (int k = 0; k < OCK_LANES; k++) m[k] = -INFINITY;
        size_t j = 0;
        for (; j + OCK_LANES <= N; j += OCK_LANES)
            for (int k = 0; k < OCK_LANES; k++) m[k] = xr[j + k] > m[k] ? xr[j + k] : m[k];
        for (int k = 0; j < N; j++, k++) m[k] = xr[j] > m[k] ? xr[j] : m[k];
        float mx = m[0];
        for (int k = 1; k < OCK_LANES; k++) mx = m[k] > mx ? m[k] : mx;
        for (j = 0; j < N; j++) xr[j] = ock_exp1(xr[j] - mx);
        float inv = 1.0f / ock_sum(xr, N);
        for (j = 0; j < N; j++) xr[j] *= inv;
    }
}
OCK_VARIANTS(void, ock_softmax_f32, (float *x, size_t N, size_t r0, size_t r1), (x, N, r0, r1))

/* MARK: - Depthwise 3x3 */

void ock_dwconv3x3_pack_f32(const float *w, size_t C, float *wt) {
    for (size_t c = 0; c < C; c++)
        for (size_t t = 0; t < 9; t++) wt[t * C + c] = w[c * 9 + t];
}

OCK_INLINE void ock_dwconv3x3_f32_body(const float *in, const float *wt, const float *b, float *out,
                                       size_t H, size_t W, size_t C, int residual, size_t y0, size_t y1) {
    for (size_t y = y0; y < y1; y++) {
        for (size_t x = 0; x < W; x++) {
            float *restrict o = out + (y * W + x) * C;
            const float *restrict self = in + (y * W + x) * C;
            if (residual) for (size_t c = 0; c < C; c++) o[c] = b[c] + self[c];
            else for (size_t c = 0; c < C; c++) o[c] = b[c];
            for (int dy = -1; dy <= 1; dy++) {
                if ((dy < 0 && y == 0) || (dy > 0 && y + 1 == H)) continue;
                for (int dx = -1; dx <= 1; dx++) {
                    if ((dx < 0 && x == 0) || (dx > 0 && x + 1 == W)) continue;
                    const float *restrict src = in + ((y + dy) * W + (x + dx)) * C;
                    const float *restrict wk = wt + (size_t)((dy + 1) * 3 + (dx + 1)) * C;
                    for (size_t c = 0; c < C; c++) o[c] += src[c] * wk[c];
                }
            }
        }
    }
}
OCK_VARIANTS(void, ock_dwconv3x3_f32,
             (const float *in, const float *wt, const float *b, float *out, size_t H, size_t W, size_t C,
              int residual, size_t y0, size_t y1),
             (in, wt, b, out, H, W, C, residual, y0, y1))
