/* Ocellus kernels: the AVX2 variant (vpmaddubsw + vpmaddwd), x86-64 only, enabled per function.
 *
 * vpmaddubsw multiplies unsigned by signed bytes and SATURATES the int16 pair sums. The weights
 * take the unsigned side as |w|, and the activation gets w's sign by a flip that costs one xor per
 * row (instead of vpsignb, which competes with the multiplies for the same two pipes here):
 * with m = (w < 0 ? 0xFF : 0), a ^ m is a where w >= 0 and -a - 1 where w < 0, so
 *   |w| * (a ^ m) = a * w - |w| * [w < 0],
 * and the sum over k is exact a.w minus a per-column constant, the same sum with a = 0, computed
 * once per panel and subtracted. Pair sums stay within 2 * 127 * 128 = 32512 < 32767 (no
 * saturation); vpmaddwd against ones widens them to int32. |w| and m are taken once per weight
 * vector and shared by the MR rows. Activations are plain int8. */
#pragma STDC FP_CONTRACT OFF
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) inline

enum { MR = 4, PREFETCH = 1024 };

/* MARK: - Quantization */

AVX2 void ock_quantize_avx2(const float *x, long ldx, long k, long row0, long row1,
                            int8_t *q, long ldq, float *scale) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (long r = row0; r < row1; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        __m256 vmax = _mm256_setzero_ps();
        long i = 0;
        for (; i + 8 <= k; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(xr + i), absmask));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4);
        for (long t = i; t < k; t++) { float v = fabsf(xr[t]); if (v > amax) amax = v; }
        float s, inv;
        ock_row_scales(amax, &s, &inv);
        const __m256 vinv = _mm256_set1_ps(inv);
        for (i = 0; i + 8 <= k; i += 8) {
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vinv));
            v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
            __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64((__m128i *)(qr + i), _mm_packs_epi16(w16, w16));
        }
        for (; i < k; i++) {
            float v = nearbyintf(xr[i] * inv);
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            qr[i] = (int8_t)v;
        }
        scale[r] = s;
    }
}

/* MARK: - Micro-kernel: mr rows x one panel (two ymm halves of 8 columns), all of K */

AVX2 static INLINE void block(const int8_t *qa, long lda, const int8_t *w, long kg, const int mr,
                              __m256i corr0, __m256i corr1, const float *sa, const float *sw16,
                              const float *bias16, float *out, long ldo) {
    __m256i acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    for (long g = 0; g < kg; g++) {
        const int8_t *wp = w + g * 64;
        _mm_prefetch((const char *)wp + PREFETCH, _MM_HINT_T0);
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)wp);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
        const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
        const __m256i m0 = _mm256_cmpgt_epi8(_mm256_setzero_si256(), w0);
        const __m256i m1 = _mm256_cmpgt_epi8(_mm256_setzero_si256(), w1);
        for (int i = 0; i < mr; i++) {
            const __m256i as = _mm256_set1_epi32(ock_load4(qa + i * lda + g * 4));
            __m256i t0 = _mm256_maddubs_epi16(u0, _mm256_xor_si256(as, m0));
            __m256i t1 = _mm256_maddubs_epi16(u1, _mm256_xor_si256(as, m1));
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(t0, ones));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(t1, ones));
        }
    }
    const __m256 s0 = _mm256_loadu_ps(sw16), s1 = _mm256_loadu_ps(sw16 + 8);
    const __m256 b0 = bias16 ? _mm256_loadu_ps(bias16) : _mm256_setzero_ps();
    const __m256 b1 = bias16 ? _mm256_loadu_ps(bias16 + 8) : _mm256_setzero_ps();
    for (int i = 0; i < mr; i++) {
        const __m256 s = _mm256_set1_ps(sa[i]);
        __m256 f0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][0], corr0)), s), s0);
        __m256 f1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][1], corr1)), s), s1);
        if (bias16) { f0 = _mm256_add_ps(f0, b0); f1 = _mm256_add_ps(f1, b1); }
        _mm256_storeu_ps(out + i * ldo, f0);
        _mm256_storeu_ps(out + i * ldo + 8, f1);
    }
}

AVX2 static void block_any(const int8_t *qa, long lda, const int8_t *w, long kg, int mr,
                           __m256i corr0, __m256i corr1, const float *sa, const float *sw16,
                           const float *bias16, float *out, long ldo) {
    switch (mr) {
        case 1: block(qa, lda, w, kg, 1, corr0, corr1, sa, sw16, bias16, out, ldo); break;
        case 2: block(qa, lda, w, kg, 2, corr0, corr1, sa, sw16, bias16, out, ldo); break;
        case 3: block(qa, lda, w, kg, 3, corr0, corr1, sa, sw16, bias16, out, ldo); break;
        default: block(qa, lda, w, kg, 4, corr0, corr1, sa, sw16, bias16, out, ldo); break;
    }
}

/* The sums with a = 0 for the 16 columns of one panel: -sum over k of |w| where w < 0. */
AVX2 static void panel_corr(const int8_t *w, long kg, __m256i *corr0, __m256i *corr1) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
    for (long g = 0; g < kg; g++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + g * 64));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + g * 64 + 32));
        const __m256i m0 = _mm256_cmpgt_epi8(_mm256_setzero_si256(), w0);
        const __m256i m1 = _mm256_cmpgt_epi8(_mm256_setzero_si256(), w1);
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w0), m0), ones));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w1), m1), ones));
    }
    *corr0 = c0;
    *corr1 = c1;
}

/* MARK: - GEMM driver */

AVX2 void ock_gemm_avx2(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1) {
    const long kg = a->k / 4, pstride = a->k * 16;
    float sw16[16], b16[16], tmp[MR * 16];
    /* Blocks of rows whose activations stay in L2, then panels, then MR rows. */
    long mc = (256L * 1024L) / (a->k > 0 ? a->k : 1);
    mc = mc < MR ? MR : (mc / MR) * MR;
    for (long r0 = row0; r0 < row1; r0 += mc) {
        long r1 = r0 + mc < row1 ? r0 + mc : row1;
        for (long p = panel0; p < panel1; p++) {
            long n0 = p * 16, cols = a->n - n0 < 16 ? a->n - n0 : 16;
            int full = cols == 16;
            for (long c = 0; c < 16; c++) {
                sw16[c] = c < cols ? a->sw[n0 + c] : 0.0f;
                b16[c] = (a->bias && c < cols) ? a->bias[n0 + c] : 0.0f;
            }
            const int8_t *w = a->qw + p * pstride;
            __m256i corr0, corr1;
            panel_corr(w, kg, &corr0, &corr1);
            for (long r = r0; r < r1; r += MR) {
                int mr = r1 - r < MR ? (int)(r1 - r) : MR;
                float *out = full ? a->y + r * a->ldy + n0 : tmp;
                long ldo = full ? a->ldy : 16;
                block_any(a->qa + r * a->lda, a->lda, w, kg, mr, corr0, corr1, a->sa + r, sw16, a->bias ? b16 : NULL, out, ldo);
                if (!full)
                    for (int i = 0; i < mr; i++) memcpy(a->y + (r + i) * a->ldy + n0, tmp + i * 16, (size_t)cols * 4);
            }
        }
    }
}

/* MARK: - Peak: 8 independent dependent chains c = c + vpmaddwd(vpmaddubsw(c, b), 1) */

AVX2 double ock_peak_avx2(long iters) {
    volatile int seed = 1;
    const __m256i b = _mm256_set1_epi8((char)(seed + 1));
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c[8];
    for (int j = 0; j < 8; j++) c[j] = _mm256_set1_epi32(j);
    double t0 = ock_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) /* the accumulator feeds the multiply: a true dependent chain */
            c[j] = _mm256_add_epi32(c[j], _mm256_madd_epi16(_mm256_maddubs_epi16(c[j], b), ones));
    double t1 = ock_now();
    __m256i s = c[0];
    for (int j = 1; j < 8; j++) s = _mm256_add_epi32(s, c[j]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return (double)iters * 8.0 * 32.0 * 2.0 / (t1 - t0) / 1e9;
}

#endif
