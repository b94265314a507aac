/* Attention helpers (fp32): fused scaled softmax of score rows and single-query cached attention.
 * Mirrors the softmax(q.k^T * scale).v core of DaViT window/channel attention and BART attention
 * (transformers `eager_attention_forward`); the matrix products around it are OpenBLAS calls made
 * from Swift (Sources/Compute/Attention.swift). */
#include "ock_attn.h"

#include <float.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
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

#if defined(__x86_64__)

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
void ock_attn_query_f32_avx512(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
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
void ock_attn_query_f32_avx2(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
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

#endif /* __x86_64__ */

/* MARK: - Channel attention (all groups) */

void ock_attn_channel_scores_f32_ref(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a) {
    for (size_t g = 0; g < groups; g++)
        for (size_t i = 0; i < cg; i++)
            for (size_t j = 0; j < cg; j++) {
                double acc = 0;
                for (size_t t = 0; t < n; t++) acc += (double)q[t * ld + g * cg + i] * (double)k[t * ld + g * cg + j];
                a[(g * cg + i) * cg + j] += (float)acc;
            }
}

void ock_attn_channel_apply_f32_ref(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                    float *out, size_t ldo) {
    for (size_t t = 0; t < n; t++)
        for (size_t g = 0; g < groups; g++)
            for (size_t i = 0; i < cg; i++) {
                double acc = 0;
                for (size_t j = 0; j < cg; j++) acc += (double)at[(g * cg + j) * cg + i] * (double)v[t * ldv + g * cg + j];
                out[t * ldo + g * cg + i] = (float)acc;
            }
}

/* Portable float versions whose inner loops run along contiguous channels (the compiler
 * vectorizes them at the baseline ISA). */
void ock_attn_channel_scores_f32_generic(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a) {
    for (size_t t = 0; t < n; t++) {
        for (size_t g = 0; g < groups; g++) {
            const float *qr = q + t * ld + g * cg, *kr = k + t * ld + g * cg;
            for (size_t i = 0; i < cg; i++) {
                float qi = qr[i];
                float *ar = a + (g * cg + i) * cg;
                for (size_t j = 0; j < cg; j++) ar[j] += qi * kr[j];
            }
        }
    }
}

#define CG_MAX 64

void ock_attn_channel_apply_f32_generic(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                        float *out, size_t ldo) {
    if (cg > CG_MAX) { ock_attn_channel_apply_f32_ref(v, ldv, n, at, cg, groups, out, ldo); return; }
    for (size_t t = 0; t < n; t++) {
        for (size_t g = 0; g < groups; g++) {
            float acc[CG_MAX];
            for (size_t i = 0; i < cg; i++) acc[i] = 0;
            const float *vr = v + t * ldv + g * cg;
            for (size_t j = 0; j < cg; j++) {
                float vj = vr[j];
                const float *col = at + (g * cg + j) * cg;
                for (size_t i = 0; i < cg; i++) acc[i] += vj * col[i];
            }
            memcpy(out + t * ldo + g * cg, acc, cg * sizeof(float));
        }
    }
}

/* AVX-512, cg a multiple of 16 up to 64: register blocks of IB score rows (or TB tokens) by JC
 * 16-wide column chunks (IB*JC, TB*JC <= 16 accumulators); tokens in L2-sized blocks, every
 * group of a block before the next block. */
#if defined(__x86_64__)
#define TOKEN_BLOCK 256

__attribute__((target("avx512f"), always_inline))
static inline void scores_block_512(const float *q, const float *k, size_t ld, size_t t0, size_t t1,
                                    size_t cg, size_t i0, float *a, const size_t JC, const size_t IB) {
    __m512 acc[16];
    for (size_t ii = 0; ii < IB; ii++)
        for (size_t c = 0; c < JC; c++) acc[ii * JC + c] = _mm512_loadu_ps(a + (i0 + ii) * cg + 16 * c);
    for (size_t t = t0; t < t1; t++) {
        const float *kr = k + t * ld, *qr = q + t * ld + i0;
        __m512 kv[4];
        for (size_t c = 0; c < JC; c++) kv[c] = _mm512_loadu_ps(kr + 16 * c);
        for (size_t ii = 0; ii < IB; ii++) {
            __m512 b = _mm512_set1_ps(qr[ii]);
            for (size_t c = 0; c < JC; c++) acc[ii * JC + c] = _mm512_fmadd_ps(b, kv[c], acc[ii * JC + c]);
        }
    }
    for (size_t ii = 0; ii < IB; ii++)
        for (size_t c = 0; c < JC; c++) _mm512_storeu_ps(a + (i0 + ii) * cg + 16 * c, acc[ii * JC + c]);
}

void ock_attn_channel_scores_f32_avx512(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a)
    __attribute__((target("avx512f")));
void ock_attn_channel_scores_f32_avx512(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a) {
    if (cg % 16 != 0 || cg > CG_MAX) { ock_attn_channel_scores_f32_generic(q, k, ld, n, cg, groups, a); return; }
    for (size_t t0 = 0; t0 < n; t0 += TOKEN_BLOCK) {
        size_t t1 = t0 + TOKEN_BLOCK < n ? t0 + TOKEN_BLOCK : n;
        for (size_t g = 0; g < groups; g++) {
            const float *qg = q + g * cg, *kg = k + g * cg;
            float *ag = a + g * cg * cg;
            switch (cg / 16) {
            case 1: scores_block_512(qg, kg, ld, t0, t1, cg, 0, ag, 1, 16); break;
            case 2: for (size_t i0 = 0; i0 < cg; i0 += 8) scores_block_512(qg, kg, ld, t0, t1, cg, i0, ag, 2, 8); break;
            case 3: for (size_t i0 = 0; i0 < cg; i0 += 4) scores_block_512(qg, kg, ld, t0, t1, cg, i0, ag, 3, 4); break;
            default: for (size_t i0 = 0; i0 < cg; i0 += 4) scores_block_512(qg, kg, ld, t0, t1, cg, i0, ag, 4, 4); break;
            }
        }
    }
}

__attribute__((target("avx512f"), always_inline))
static inline void apply_block_512(const float *v, size_t ldv, size_t t0, const float *at, size_t cg,
                                   float *out, size_t ldo, const size_t JC, const size_t TB) {
    __m512 acc[16];
    for (size_t x = 0; x < TB * JC; x++) acc[x] = _mm512_setzero_ps();
    for (size_t j = 0; j < cg; j++) {
        __m512 col[4];
        for (size_t c = 0; c < JC; c++) col[c] = _mm512_loadu_ps(at + j * cg + 16 * c);
        for (size_t tt = 0; tt < TB; tt++) {
            __m512 b = _mm512_set1_ps(v[(t0 + tt) * ldv + j]);
            for (size_t c = 0; c < JC; c++) acc[tt * JC + c] = _mm512_fmadd_ps(b, col[c], acc[tt * JC + c]);
        }
    }
    for (size_t tt = 0; tt < TB; tt++)
        for (size_t c = 0; c < JC; c++) _mm512_storeu_ps(out + (t0 + tt) * ldo + 16 * c, acc[tt * JC + c]);
}

__attribute__((target("avx512f")))
static void apply_tokens_512(const float *v, size_t ldv, size_t t0, size_t nt, const float *at, size_t cg,
                             float *out, size_t ldo) {
    size_t jc = cg / 16, tb = jc == 1 ? 16 : jc == 2 ? 8 : 4;
    size_t t = t0, full = t0 + nt - nt % tb, end = t0 + nt;
    switch (jc) {
    case 1: for (; t < full; t += tb) apply_block_512(v, ldv, t, at, cg, out, ldo, 1, 16); break;
    case 2: for (; t < full; t += tb) apply_block_512(v, ldv, t, at, cg, out, ldo, 2, 8); break;
    case 3: for (; t < full; t += tb) apply_block_512(v, ldv, t, at, cg, out, ldo, 3, 4); break;
    default: for (; t < full; t += tb) apply_block_512(v, ldv, t, at, cg, out, ldo, 4, 4); break;
    }
    for (; t < end; t++) {
        switch (jc) {
        case 1: apply_block_512(v, ldv, t, at, cg, out, ldo, 1, 1); break;
        case 2: apply_block_512(v, ldv, t, at, cg, out, ldo, 2, 1); break;
        case 3: apply_block_512(v, ldv, t, at, cg, out, ldo, 3, 1); break;
        default: apply_block_512(v, ldv, t, at, cg, out, ldo, 4, 1); break;
        }
    }
}

void ock_attn_channel_apply_f32_avx512(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                       float *out, size_t ldo) __attribute__((target("avx512f")));
void ock_attn_channel_apply_f32_avx512(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                       float *out, size_t ldo) {
    if (cg % 16 != 0 || cg > CG_MAX) { ock_attn_channel_apply_f32_generic(v, ldv, n, at, cg, groups, out, ldo); return; }
    for (size_t t0 = 0; t0 < n; t0 += 32) {
        size_t nt = t0 + 32 < n ? 32 : n - t0;
        for (size_t g = 0; g < groups; g++)
            apply_tokens_512(v + g * cg, ldv, t0, nt, at + g * cg * cg, cg, out + g * cg, ldo);
    }
}

#endif /* __x86_64__ */

/* MARK: - Work sharing */

size_t ock_attn_claim(size_t *counter, size_t n) { return __atomic_fetch_add(counter, n, __ATOMIC_RELAXED); }

/* MARK: - Dispatch (chosen once at load) */

typedef void (*softmax_fn)(float *, size_t, size_t, size_t, float, size_t, size_t);
typedef void (*scores_fn)(const float *, const float *, size_t, size_t, size_t, size_t, float *);
typedef void (*apply_fn)(const float *, size_t, size_t, const float *, size_t, size_t, float *, size_t);
typedef void (*query_fn)(const float *, const float *, size_t, const float *, size_t,
                         size_t, size_t, size_t, float, float *, float *);

static softmax_fn g_softmax = ock_attn_softmax_f32_ref;
static query_fn g_query = ock_attn_query_f32_ref;
static scores_fn g_scores = ock_attn_channel_scores_f32_ref;
static apply_fn g_apply = ock_attn_channel_apply_f32_ref;
static size_t g_query_lanes = 1; /* the SIMD query kernel needs hd % lanes == 0 */
static const char *g_variant = "reference";

#if defined(__x86_64__)
int ock_attn_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

int ock_attn_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
}
#else
int ock_attn_cpu_has_avx512(void) { return 0; }
int ock_attn_cpu_has_avx2(void) { return 0; }
#endif

static void choose(int reference) {
#if defined(__x86_64__)
    if (!reference && ock_attn_cpu_has_avx512()) {
        g_softmax = ock_attn_softmax_f32_avx512; g_query = ock_attn_query_f32_avx512; g_query_lanes = 16; g_variant = "avx512";
        g_scores = ock_attn_channel_scores_f32_avx512; g_apply = ock_attn_channel_apply_f32_avx512;
    } else if (!reference && ock_attn_cpu_has_avx2()) {
        g_softmax = ock_attn_softmax_f32_avx2; g_query = ock_attn_query_f32_avx2; g_query_lanes = 8; g_variant = "avx2";
        g_scores = ock_attn_channel_scores_f32_generic; g_apply = ock_attn_channel_apply_f32_generic;
    } else
#endif
    if (!reference) {
        /* No x86 SIMD (ARM): the portable channel kernels (clang vectorizes them), reference rest. */
        g_softmax = ock_attn_softmax_f32_ref; g_query = ock_attn_query_f32_ref; g_query_lanes = 1; g_variant = "generic";
        g_scores = ock_attn_channel_scores_f32_generic; g_apply = ock_attn_channel_apply_f32_generic;
    } else {
        g_softmax = ock_attn_softmax_f32_ref; g_query = ock_attn_query_f32_ref; g_query_lanes = 1; g_variant = "reference";
        g_scores = ock_attn_channel_scores_f32_ref; g_apply = ock_attn_channel_apply_f32_ref;
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

void ock_attn_channel_scores_f32(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a) {
    g_scores(q, k, ld, n, cg, groups, a);
}

void ock_attn_channel_apply_f32(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                float *out, size_t ldo) {
    g_apply(v, ldv, n, at, cg, groups, out, ldo);
}
