/* Attention helpers (fp32): fused scaled softmax of score rows and single-query cached attention.
 * Mirrors the softmax(q.k^T * scale).v core of DaViT window/channel attention and BART attention
 * (transformers `eager_attention_forward`); the matrix products around it are OpenBLAS calls made
 * from Swift (Sources/Compute/Attention.swift). */
#include "ock_attn.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* MARK: - Reference */

static size_t valid_count(size_t i, size_t cols, size_t valid0, size_t valid_step) {
    size_t n = valid0 + i * valid_step;
    return n < cols ? n : cols;
}

void ock_attn_softmax_f32_ref(float *s, size_t rows, size_t cols, size_t ld, float scale,
                              size_t valid0, size_t valid_step) {
    for (size_t i = 0; i < rows; i++) {
        float *row = s + i * ld;
        size_t n = valid_count(i, cols, valid0, valid_step);
        float mx = -INFINITY;
        for (size_t j = 0; j < n; j++) if (row[j] > mx) mx = row[j];
        double sum = 0;
        for (size_t j = 0; j < n; j++) {
            double e = exp((double)scale * ((double)row[j] - (double)mx));
            row[j] = (float)e;
            sum += e;
        }
        double inv = 1.0 / sum;
        for (size_t j = 0; j < n; j++) row[j] = (float)((double)row[j] * inv);
        for (size_t j = n; j < cols; j++) row[j] = 0;
    }
}

void ock_attn_query_f32_ref(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                            size_t len, size_t heads, size_t hd, float scale, float *scores, float *out) {
    for (size_t h = 0; h < heads; h++) {
        const float *qh = q + h * hd;
        for (size_t j = 0; j < len; j++) {
            const float *kj = k + j * ldk + h * hd;
            double dot = 0;
            for (size_t c = 0; c < hd; c++) dot += (double)qh[c] * (double)kj[c];
            scores[j] = (float)dot;
        }
        ock_attn_softmax_f32_ref(scores, 1, len, len, scale, len, 0);
        float *oh = out + h * hd;
        for (size_t c = 0; c < hd; c++) {
            double acc = 0;
            for (size_t j = 0; j < len; j++) acc += (double)scores[j] * (double)v[j * ldv + h * hd + c];
            oh[c] = (float)acc;
        }
    }
}

/* MARK: - exp for x <= 0
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in a
 * short high part and a low correction so n*ln2_hi is exact), exp(r) by its Taylor series to r^7
 * (truncation error below 6e-9 relative, under float rounding). Inputs are clamped at -87.3 so
 * 2^n stays a normal float; exp(-87.3) ~ 1e-38 is negligible next to the row's largest term, 1. */

#define EXP_LO (-87.3f)
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.42860682030941723e-06f
#define C2 (1.0f / 2)
#define C3 (1.0f / 6)
#define C4 (1.0f / 24)
#define C5 (1.0f / 120)
#define C6 (1.0f / 720)
#define C7 (1.0f / 5040)

/* MARK: - AVX-512 */

__attribute__((target("avx512f")))
static inline __m512 exp_neg_512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_LO));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f")))
static inline __mmask16 tail_mask16(size_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

__attribute__((target("avx512f")))
void ock_attn_softmax_f32_avx512(float *s, size_t rows, size_t cols, size_t ld, float scale,
                                 size_t valid0, size_t valid_step) {
    const __m512 vscale = _mm512_set1_ps(scale);
    for (size_t i = 0; i < rows; i++) {
        float *row = s + i * ld;
        size_t n = valid_count(i, cols, valid0, valid_step);
        __m512 vmax = _mm512_set1_ps(-FLT_MAX);
        for (size_t j = 0; j < n; j += 16) {
            __mmask16 m = tail_mask16(n - j);
            vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, row + j));
        }
        __m512 bias = _mm512_mul_ps(_mm512_set1_ps(_mm512_reduce_max_ps(vmax)), vscale);
        __m512 vsum = _mm512_setzero_ps();
        for (size_t j = 0; j < n; j += 16) {
            __mmask16 m = tail_mask16(n - j);
            __m512 x = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, row + j), vscale, bias);
            __m512 e = exp_neg_512(x);
            vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
            _mm512_mask_storeu_ps(row + j, m, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
        for (size_t j = 0; j < n; j += 16) {
            __mmask16 m = tail_mask16(n - j);
            _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
        }
        if (n < cols) memset(row + n, 0, (cols - n) * sizeof(float));
    }
}

__attribute__((target("avx512f")))
static void query_f32_avx512(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                             size_t len, size_t heads, size_t hd, float scale, float *scores, float *out) {
    for (size_t h = 0; h < heads; h++) {
        const float *qh = q + h * hd;
        for (size_t j = 0; j < len; j++) {
            const float *kj = k + j * ldk + h * hd;
            __m512 acc = _mm512_setzero_ps();
            for (size_t c = 0; c < hd; c += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qh + c), _mm512_loadu_ps(kj + c), acc);
            scores[j] = _mm512_reduce_add_ps(acc);
        }
        ock_attn_softmax_f32_avx512(scores, 1, len, len, scale, len, 0);
        float *oh = out + h * hd;
        for (size_t c = 0; c < hd; c += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (size_t j = 0; j < len; j++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(scores[j]), _mm512_loadu_ps(v + j * ldv + h * hd + c), acc);
            _mm512_storeu_ps(oh + c, acc);
        }
    }
}

/* MARK: - AVX2 */

__attribute__((target("avx2,fma")))
static inline __m256 exp_neg_256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(C7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n for n in [-126, 0]: the biased exponent n + 127 in the exponent field. */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static inline float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
void ock_attn_softmax_f32_avx2(float *s, size_t rows, size_t cols, size_t ld, float scale,
                               size_t valid0, size_t valid_step) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (size_t i = 0; i < rows; i++) {
        float *row = s + i * ld;
        size_t n = valid_count(i, cols, valid0, valid_step);
        size_t n8 = n & ~(size_t)7;
        __m256 vmax = _mm256_set1_ps(-FLT_MAX);
        for (size_t j = 0; j < n8; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + j));
        float mx = hmax256(vmax);
        for (size_t j = n8; j < n; j++) if (row[j] > mx) mx = row[j];
        __m256 bias = _mm256_set1_ps(mx * scale);
        __m256 vsum = _mm256_setzero_ps();
        for (size_t j = 0; j < n8; j += 8) {
            __m256 e = exp_neg_256(_mm256_fmsub_ps(_mm256_loadu_ps(row + j), vscale, bias));
            vsum = _mm256_add_ps(vsum, e);
            _mm256_storeu_ps(row + j, e);
        }
        float sum = hsum256(vsum);
        for (size_t j = n8; j < n; j++) {
            float e = expf(fmaf(row[j], scale, -mx * scale));
            row[j] = e;
            sum += e;
        }
        __m256 inv = _mm256_set1_ps(1.0f / sum);
        for (size_t j = 0; j < n8; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
        for (size_t j = n8; j < n; j++) row[j] *= 1.0f / sum;
        if (n < cols) memset(row + n, 0, (cols - n) * sizeof(float));
    }
}

__attribute__((target("avx2,fma")))
static void query_f32_avx2(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                           size_t len, size_t heads, size_t hd, float scale, float *scores, float *out) {
    for (size_t h = 0; h < heads; h++) {
        const float *qh = q + h * hd;
        for (size_t j = 0; j < len; j++) {
            const float *kj = k + j * ldk + h * hd;
            __m256 acc = _mm256_setzero_ps();
            for (size_t c = 0; c < hd; c += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + c), _mm256_loadu_ps(kj + c), acc);
            scores[j] = hsum256(acc);
        }
        ock_attn_softmax_f32_avx2(scores, 1, len, len, scale, len, 0);
        float *oh = out + h * hd;
        for (size_t c = 0; c < hd; c += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (size_t j = 0; j < len; j++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(scores[j]), _mm256_loadu_ps(v + j * ldv + h * hd + c), acc);
            _mm256_storeu_ps(oh + c, acc);
        }
    }
}

/* MARK: - Dispatch (chosen once at load) */

typedef void (*softmax_fn)(float *, size_t, size_t, size_t, float, size_t, size_t);
typedef void (*query_fn)(const float *, const float *, size_t, const float *, size_t,
                         size_t, size_t, size_t, float, float *, float *);

static softmax_fn g_softmax = ock_attn_softmax_f32_ref;
static query_fn g_query = ock_attn_query_f32_ref;
static size_t g_query_lanes = 1; /* the SIMD query kernel needs hd % lanes == 0 */
static const char *g_variant = "reference";

int ock_attn_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

int ock_attn_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
}

static void choose(int reference) {
    if (!reference && ock_attn_cpu_has_avx512()) {
        g_softmax = ock_attn_softmax_f32_avx512; g_query = query_f32_avx512; g_query_lanes = 16; g_variant = "avx512";
    } else if (!reference && ock_attn_cpu_has_avx2()) {
        g_softmax = ock_attn_softmax_f32_avx2; g_query = query_f32_avx2; g_query_lanes = 8; g_variant = "avx2";
    } else {
        g_softmax = ock_attn_softmax_f32_ref; g_query = ock_attn_query_f32_ref; g_query_lanes = 1; g_variant = "reference";
    }
}

__attribute__((constructor))
static void ock_attn_init(void) { choose(0); }

void ock_attn_force_reference(int on) { choose(on); }

const char *ock_attn_variant(void) { return g_variant; }

void ock_attn_softmax_f32(float *s, size_t rows, size_t cols, size_t ld, float scale,
                          size_t valid0, size_t valid_step) {
    g_softmax(s, rows, cols, ld, scale, valid0, valid_step);
}

void ock_attn_query_f32(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                        size_t len, size_t heads, size_t hd, float scale, float *scores, float *out) {
    if (hd % g_query_lanes == 0) g_query(q, k, ldk, v, ldv, len, heads, hd, scale, scores, out);
    else ock_attn_query_f32_ref(q, k, ldk, v, ldv, len, heads, hd, scale, scores, out);
}
