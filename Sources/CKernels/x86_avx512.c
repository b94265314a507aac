/* Ocellus kernels: the AVX-512 VNNI variant (vpdpbusd), x86-64 only, enabled per function.
 *
 * vpdpbusd multiplies UNSIGNED bytes of its first source by SIGNED bytes of its second. The
 * weights come straight from the mapped model file (signed, read-only), so the activations take
 * the unsigned side: quantize stores u = q + 128 (bits q ^ 0x80) and the kernel subtracts
 * 128 * colsum(w[n, :]), computed on the fly per panel (once per block of rows; fused into the
 * main loop for small M). This keeps the file format untouched and costs ~1/M extra work. */
#pragma STDC FP_CONTRACT OFF
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq")))
#define INLINE __attribute__((always_inline)) inline

enum { MR = 6, NR = 4, SMALL_M = 4 };
#define STREAM_BYTES (4.0 * 1024 * 1024) /* outputs beyond this leave the caches anyway */

/* MARK: - Quantization (stores q ^ 0x80) */

VNNI void ock_quantize_vnni(const float *x, long ldx, long k, long row0, long row1,
                            int8_t *q, long ldq, float *scale) {
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (long r = row0; r < row1; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        __m512 vmax = _mm512_setzero_ps();
        long i = 0;
        for (; i + 16 <= k; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xr + i)));
        __mmask16 tail = (__mmask16)((1u << (k - i)) - 1u);
        if (k - i) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, xr + i)));
        float s, inv;
        ock_row_scales(_mm512_reduce_max_ps(vmax), &s, &inv);
        const __m512 vinv = _mm512_set1_ps(inv);
        for (i = 0; i + 16 <= k; i += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xr + i), vinv));
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            _mm_storeu_si128((__m128i *)(qr + i), _mm_xor_si128(_mm512_cvtepi32_epi8(v), flip));
        }
        if (k - i) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(tail, xr + i), vinv));
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            v = _mm512_xor_si512(v, _mm512_set1_epi32(0x80));
            _mm512_mask_cvtepi32_storeu_epi8(qr + i, tail, v);
        }
        scale[r] = s;
    }
}

/* MARK: - Micro-kernel: mr rows x nr panels of 16 columns, all of K */

/* Per-panel constants of the epilogue. */
typedef struct panel_consts {
    __m512i corr[NR];   /* 128 * colsum of each panel (many-row path) */
    __m512 sw[NR];      /* weight scales (zero beyond n) */
    __m512 bias[NR];    /* bias (zero beyond n or without bias) */
    __mmask16 mask[NR]; /* valid columns */
} panel_consts;

VNNI static INLINE void block(const int8_t *qa, long lda, const int8_t *w, long pstride, long kg,
                              const int mr, const int nr, const panel_consts *pc,
                              const float *sa, int has_bias, float *y, long ldy, int stream) {
    __m512i acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_si512();
    for (long g = 0; g < kg; g++) {
        __m512i wv[NR];
        for (int j = 0; j < nr; j++) wv[j] = _mm512_loadu_si512((const void *)(w + j * pstride + g * 64));
        for (int i = 0; i < mr; i++) {
            const __m512i av = _mm512_set1_epi32(ock_load4(qa + i * lda + g * 4));
            for (int j = 0; j < nr; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, wv[j]);
        }
    }
    for (int i = 0; i < mr; i++) {
        const __m512 s = _mm512_set1_ps(sa[i]);
        for (int j = 0; j < nr; j++) {
            __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], pc->corr[j]));
            f = _mm512_mul_ps(_mm512_mul_ps(f, s), pc->sw[j]);
            if (has_bias) f = _mm512_add_ps(f, pc->bias[j]);
            float *dst = y + i * ldy + j * 16;
            if (stream && pc->mask[j] == 0xffff && ((uintptr_t)dst & 63) == 0) _mm512_stream_ps(dst, f);
            else _mm512_mask_storeu_ps(dst, pc->mask[j], f);
        }
    }
}

/* Dispatches to a block specialised for constant (mr, nr). */
#define CASE(MRV, NRV) case (MRV) * 8 + (NRV): \
    block(qa, lda, w, pstride, kg, MRV, NRV, pc, sa, has_bias, y, ldy, stream); break;
#define ROWS(MRV) CASE(MRV, 1) CASE(MRV, 2) CASE(MRV, 3) CASE(MRV, 4)

VNNI static void block_any(const int8_t *qa, long lda, const int8_t *w, long pstride, long kg,
                           int mr, int nr, const panel_consts *pc,
                           const float *sa, int has_bias, float *y, long ldy, int stream) {
    switch (mr * 8 + nr) {
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
        default: break;
    }
}

/* MARK: - Few rows: one panel at a time, one sequential weight stream, colsum fused */

VNNI static INLINE void small_block(const int8_t *qa, long lda, const int8_t *w, long kg, const int mr,
                                    __m512 sw, __m512 bias, __mmask16 mask, const float *sa,
                                    int has_bias, float *y, long ldy) {
    __m512i acc[SMALL_M][4], cs[4];
    for (int u = 0; u < 4; u++) {
        cs[u] = _mm512_setzero_si512();
        for (int i = 0; i < SMALL_M; i++) acc[i][u] = _mm512_setzero_si512();
    }
    const __m512i ones = _mm512_set1_epi8(1);
    long g = 0;
    for (; g + 4 <= kg; g += 4) { /* four independent chains over consecutive groups of K */
        for (int u = 0; u < 4; u++) {
            const int8_t *wp = w + (g + u) * 64;
            /* no software prefetch: the stream is sequential and the hardware prefetchers keep it
             * at the plain-read rate; T0 prefetches measured 20-40 % slower on 2 threads */
            const __m512i wv = _mm512_loadu_si512((const void *)wp);
            cs[u] = _mm512_dpbusd_epi32(cs[u], ones, wv);
            for (int i = 0; i < mr; i++)
                acc[i][u] = _mm512_dpbusd_epi32(acc[i][u], _mm512_set1_epi32(ock_load4(qa + i * lda + (g + u) * 4)), wv);
        }
    }
    for (; g < kg; g++) {
        const __m512i wv = _mm512_loadu_si512((const void *)(w + g * 64));
        cs[0] = _mm512_dpbusd_epi32(cs[0], ones, wv);
        for (int i = 0; i < mr; i++)
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], _mm512_set1_epi32(ock_load4(qa + i * lda + g * 4)), wv);
    }
    const __m512i corr = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(cs[0], cs[1]), _mm512_add_epi32(cs[2], cs[3])), 7);
    for (int i = 0; i < mr; i++) {
        __m512i t = _mm512_add_epi32(_mm512_add_epi32(acc[i][0], acc[i][1]), _mm512_add_epi32(acc[i][2], acc[i][3]));
        __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(t, corr));
        f = _mm512_mul_ps(_mm512_mul_ps(f, _mm512_set1_ps(sa[i])), sw);
        if (has_bias) f = _mm512_add_ps(f, bias);
        _mm512_mask_storeu_ps(y + i * ldy, mask, f);
    }
}

/* MARK: - GEMM driver */

VNNI static void panel_setup(const ock_gemm_args *a, long p, int nr, int need_corr, panel_consts *pc) {
    long kg = a->k / 4, pstride = a->k * 16;
    const __m512i ones = _mm512_set1_epi8(1);
    for (int j = 0; j < nr; j++) {
        long n0 = (p + j) * 16, cols = a->n - n0 < 16 ? a->n - n0 : 16;
        __mmask16 m = (__mmask16)((1u << cols) - 1u);
        pc->mask[j] = m;
        pc->sw[j] = _mm512_maskz_loadu_ps(m, a->sw + n0);
        pc->bias[j] = a->bias ? _mm512_maskz_loadu_ps(m, a->bias + n0) : _mm512_setzero_ps();
        if (need_corr) {
            const int8_t *wp = a->qw + (p + j) * pstride;
            __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
            long g = 0;
            for (; g + 2 <= kg; g += 2) {
                c0 = _mm512_dpbusd_epi32(c0, ones, _mm512_loadu_si512((const void *)(wp + g * 64)));
                c1 = _mm512_dpbusd_epi32(c1, ones, _mm512_loadu_si512((const void *)(wp + g * 64 + 64)));
            }
            if (g < kg) c0 = _mm512_dpbusd_epi32(c0, ones, _mm512_loadu_si512((const void *)(wp + g * 64)));
            pc->corr[j] = _mm512_slli_epi32(_mm512_add_epi32(c0, c1), 7);
        }
    }
}

VNNI void ock_gemm_vnni(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1) {
    if (row1 <= row0 || panel1 <= panel0) return;
    const long kg = a->k / 4, pstride = a->k * 16, rows = row1 - row0;
    const int has_bias = a->bias != NULL;
    panel_consts pc;
    if (rows <= SMALL_M) {
        /* Few rows (decoder step, beams, LM head): stream the weights once, colsum fused. */
        for (long p = panel0; p < panel1; p++) {
            panel_setup(a, p, 1, 0, &pc);
            const int8_t *qa = a->qa + row0 * a->lda, *w = a->qw + p * pstride;
            float *y = a->y + row0 * a->ldy + p * 16;
            const float *sa = a->sa + row0;
            switch (rows) {
                case 1: small_block(qa, a->lda, w, kg, 1, pc.sw[0], pc.bias[0], pc.mask[0], sa, has_bias, y, a->ldy); break;
                case 2: small_block(qa, a->lda, w, kg, 2, pc.sw[0], pc.bias[0], pc.mask[0], sa, has_bias, y, a->ldy); break;
                case 3: small_block(qa, a->lda, w, kg, 3, pc.sw[0], pc.bias[0], pc.mask[0], sa, has_bias, y, a->ldy); break;
                default: small_block(qa, a->lda, w, kg, 4, pc.sw[0], pc.bias[0], pc.mask[0], sa, has_bias, y, a->ldy); break;
            }
        }
        return;
    }
    /* Many rows: blocks of rows whose activations stay in L2; within one, each group of NR panels
     * (NR*K*16 bytes of weights, from L2) passes under every MR-row tile. An output too large to
     * stay in cache is written with streaming stores (no read-for-ownership of lines we overwrite). */
    long mc = (512L * 1024L) / (a->k > 0 ? a->k : 1);
    mc = mc < MR ? MR : (mc / MR) * MR;
    const int stream = (double)a->m * (double)a->n * 4.0 >= STREAM_BYTES; /* the whole output, not this share */
    for (long r0 = row0; r0 < row1; r0 += mc) {
        long r1 = r0 + mc < row1 ? r0 + mc : row1;
        for (long p = panel0; p < panel1; p += NR) {
            int nr = panel1 - p < NR ? (int)(panel1 - p) : NR;
            panel_setup(a, p, nr, 1, &pc);
            const int8_t *w = a->qw + p * pstride;
            for (long r = r0; r < r1; r += MR) {
                int mr = r1 - r < MR ? (int)(r1 - r) : MR;
                for (long i = r + MR; i < r + 2 * MR && i < r1; i++) /* next tile's activations */
                    for (long b = 0; b < a->k; b += 64)
                        _mm_prefetch((const char *)(a->qa + i * a->lda + b), _MM_HINT_T0);
                block_any(a->qa + r * a->lda, a->lda, w, pstride, kg, mr, nr,
                          &pc, a->sa + r, has_bias, a->y + r * a->ldy + p * 16, a->ldy, stream);
            }
        }
    }
    if (stream) _mm_sfence(); /* order the streaming stores before whoever reads y next */
}

/* MARK: - Peak: 16 independent vpdpbusd zmm chains */

VNNI double ock_peak_vnni(long iters) {
    volatile int seed = 1;
    const __m512i a = _mm512_set1_epi8((char)seed), b = _mm512_set1_epi8((char)(seed + 1));
    __m512i c[16];
    for (int j = 0; j < 16; j++) c[j] = _mm512_set1_epi32(j);
    double t0 = ock_now();
    for (long i = 0; i < iters; i++) {
        c[0] = _mm512_dpbusd_epi32(c[0], a, b);   c[1] = _mm512_dpbusd_epi32(c[1], a, b);
        c[2] = _mm512_dpbusd_epi32(c[2], a, b);   c[3] = _mm512_dpbusd_epi32(c[3], a, b);
        c[4] = _mm512_dpbusd_epi32(c[4], a, b);   c[5] = _mm512_dpbusd_epi32(c[5], a, b);
        c[6] = _mm512_dpbusd_epi32(c[6], a, b);   c[7] = _mm512_dpbusd_epi32(c[7], a, b);
        c[8] = _mm512_dpbusd_epi32(c[8], a, b);   c[9] = _mm512_dpbusd_epi32(c[9], a, b);
        c[10] = _mm512_dpbusd_epi32(c[10], a, b); c[11] = _mm512_dpbusd_epi32(c[11], a, b);
        c[12] = _mm512_dpbusd_epi32(c[12], a, b); c[13] = _mm512_dpbusd_epi32(c[13], a, b);
        c[14] = _mm512_dpbusd_epi32(c[14], a, b); c[15] = _mm512_dpbusd_epi32(c[15], a, b);
    }
    double t1 = ock_now();
    __m512i s = c[0];
    for (int j = 1; j < 16; j++) s = _mm512_add_epi32(s, c[j]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return (double)iters * 16.0 * 64.0 * 2.0 / (t1 - t0) / 1e9;
}

#endif
