/* Ocellus kernels: the AArch64 variants, NEON (vmull_s8 + vpadalq_s16) and NEON dot product
 * (vdotq_laneq_s32, enabled per function with target("arch=armv8.2-a+dotprod")). Both read plain int8
 * activations; the products of int8 pairs are exact in int16 and the sums exact in int32. */
#pragma STDC FP_CONTRACT OFF
#include "kernels_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define INLINE __attribute__((always_inline)) inline

/* MARK: - Quantization */

void ock_quantize_neon(const float *x, long ldx, long k, long row0, long row1,
                       int8_t *q, long ldq, float *scale) {
    for (long r = row0; r < row1; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        float32x4_t vmax = vdupq_n_f32(0.0f);
        long i = 0;
        for (; i + 4 <= k; i += 4) vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(xr + i)));
        float amax = vmaxvq_f32(vmax);
        for (long t = i; t < k; t++) { float v = fabsf(xr[t]); if (v > amax) amax = v; }
        float s, inv;
        ock_row_scales(amax, &s, &inv);
        const float32x4_t vinv = vdupq_n_f32(inv);
        const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
        for (i = 0; i + 8 <= k; i += 8) {
            /* vcvtnq: round to nearest, ties to even, as nearbyintf in the reference */
            int32x4_t a = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(xr + i), vinv));
            int32x4_t b = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(xr + i + 4), vinv));
            a = vminq_s32(vmaxq_s32(a, lo), hi);
            b = vminq_s32(vmaxq_s32(b, lo), hi);
            int16x8_t h = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            vst1_s8(qr + i, vmovn_s16(h));
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

/* MARK: - Shared epilogue: 16 int32 sums of one row of one panel to fp32 */

static INLINE void store_row(const int32x4_t c[4], float sa, const float *sw16, const float *b16,
                             float *out) {
    for (int j = 0; j < 4; j++) {
        float32x4_t f = vmulq_f32(vmulq_n_f32(vcvtq_f32_s32(c[j]), sa), vld1q_f32(sw16 + 4 * j));
        if (b16) f = vaddq_f32(f, vld1q_f32(b16 + 4 * j));
        vst1q_f32(out + 4 * j, f);
    }
}

/* Runs `tile(row, mr, out, ldo)` for every row tile of one panel, through a 16-wide temporary when
 * the panel is clipped by n. */
#define PANEL_LOOP(MRMAX, TILE)                                                                  \
    const long kg = a->k / 4, pstride = a->k * 16;                                               \
    float sw16[16], b16[16], tmp[(MRMAX) * 16];                                                  \
    for (long p = panel0; p < panel1; p++) {                                                     \
        long n0 = p * 16, cols = a->n - n0 < 16 ? a->n - n0 : 16;                                \
        for (long c = 0; c < 16; c++) {                                                          \
            sw16[c] = c < cols ? a->sw[n0 + c] : 0.0f;                                           \
            b16[c] = (a->bias && c < cols) ? a->bias[n0 + c] : 0.0f;                             \
        }                                                                                        \
        const int8_t *w = a->qw + p * pstride;                                                   \
        for (long r = row0; r < row1; r += (MRMAX)) {                                            \
            int mr = row1 - r < (MRMAX) ? (int)(row1 - r) : (MRMAX);                             \
            int full = cols == 16;                                                               \
            float *out = full ? a->y + r * a->ldy + n0 : tmp;                                    \
            long ldo = full ? a->ldy : 16;                                                       \
            TILE(a->qa + r * a->lda, a->lda, w, kg, mr, a->sa + r, sw16, a->bias ? b16 : NULL, out, ldo); \
            if (!full)                                                                           \
                for (int i = 0; i < mr; i++)                                                     \
                    memcpy(a->y + (r + i) * a->ldy + n0, tmp + i * 16, (size_t)cols * 4);        \
        }                                                                                        \
    }

/* MARK: - NEON: vmull_s8 + vpadalq_s16, 2 rows x one panel */

static INLINE void tile_neon(const int8_t *qa, long lda, const int8_t *w, long kg, int mr,
                             const float *sa, const float *sw16, const float *b16, float *out, long ldo) {
    /* acc[i][h]: row i, channels 2h and 2h+1, as [c(2h) k01, c(2h) k23, c(2h+1) k01, c(2h+1) k23] */
    int32x4_t acc[2][8];
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 8; h++) acc[i][h] = vdupq_n_s32(0);
    for (long g = 0; g < kg; g++) {
        const int8_t *wp = w + g * 64;
        int8x16_t wv[4] = {vld1q_s8(wp), vld1q_s8(wp + 16), vld1q_s8(wp + 32), vld1q_s8(wp + 48)};
        for (int i = 0; i < mr; i++) {
            const int8x16_t av = vreinterpretq_s8_s32(vdupq_n_s32(ock_load4(qa + i * lda + g * 4)));
            for (int q = 0; q < 4; q++) {
                acc[i][2 * q] = vpadalq_s16(acc[i][2 * q], vmull_s8(vget_low_s8(wv[q]), vget_low_s8(av)));
                acc[i][2 * q + 1] = vpadalq_s16(acc[i][2 * q + 1], vmull_high_s8(wv[q], av));
            }
        }
    }
    for (int i = 0; i < mr; i++) {
        int32x4_t c[4];
        for (int j = 0; j < 4; j++) c[j] = vpaddq_s32(acc[i][2 * j], acc[i][2 * j + 1]);
        store_row(c, sa[i], sw16, b16, out + i * ldo);
    }
}

void ock_gemm_neon(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1) {
    PANEL_LOOP(2, tile_neon)
}

/* MARK: - NEON dot product: vdotq_laneq_s32, 4 rows x one panel, 4 groups of K per step */

DOTPROD static INLINE void tile_dot(const int8_t *qa, long lda, const int8_t *w, long kg, int mr,
                                    const float *sa, const float *sw16, const float *b16, float *out, long ldo) {
    int32x4_t acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_s32(0);
    long g = 0;
    for (; g + 4 <= kg; g += 4) {
        int8x16_t av[4];
        for (int i = 0; i < mr; i++) av[i] = vld1q_s8(qa + i * lda + g * 4); /* 4 groups of K */
        for (int j = 0; j < 4; j++) av[j] = j < mr ? av[j] : vdupq_n_s8(0);
#define STEP(L)                                                                                  \
        {                                                                                        \
            const int8_t *wp = w + (g + (L)) * 64;                                               \
            int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16), w2 = vld1q_s8(wp + 32), w3 = vld1q_s8(wp + 48); \
            for (int i = 0; i < mr; i++) {                                                       \
                acc[i][0] = vdotq_laneq_s32(acc[i][0], w0, av[i], L);                            \
                acc[i][1] = vdotq_laneq_s32(acc[i][1], w1, av[i], L);                            \
                acc[i][2] = vdotq_laneq_s32(acc[i][2], w2, av[i], L);                            \
                acc[i][3] = vdotq_laneq_s32(acc[i][3], w3, av[i], L);                            \
            }                                                                                    \
        }
        STEP(0) STEP(1) STEP(2) STEP(3)
#undef STEP
    }
    for (; g < kg; g++) {
        const int8_t *wp = w + g * 64;
        int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16), w2 = vld1q_s8(wp + 32), w3 = vld1q_s8(wp + 48);
        for (int i = 0; i < mr; i++) {
            const int8x16_t av = vreinterpretq_s8_s32(vdupq_n_s32(ock_load4(qa + i * lda + g * 4)));
            acc[i][0] = vdotq_laneq_s32(acc[i][0], w0, av, 0);
            acc[i][1] = vdotq_laneq_s32(acc[i][1], w1, av, 0);
            acc[i][2] = vdotq_laneq_s32(acc[i][2], w2, av, 0);
            acc[i][3] = vdotq_laneq_s32(acc[i][3], w3, av, 0);
        }
    }
    for (int i = 0; i < mr; i++) store_row(acc[i], sa[i], sw16, b16, out + i * ldo);
}

DOTPROD void ock_gemm_dotprod(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1) {
    PANEL_LOOP(4, tile_dot)
}

/* MARK: - Peaks */

double ock_peak_neon(long iters) {
    volatile int seed = 1;
    const int8x8_t b = vdup_n_s8((int8_t)(seed + 1));
    int32x4_t c[8];
    for (int j = 0; j < 8; j++) c[j] = vdupq_n_s32(j);
    double t0 = ock_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) /* the accumulator feeds the multiply: a true dependent chain */
            c[j] = vpadalq_s16(c[j], vmull_s8(vreinterpret_s8_s32(vget_low_s32(c[j])), b));
    double t1 = ock_now();
    int32x4_t s = c[0];
    for (int j = 1; j < 8; j++) s = vaddq_s32(s, c[j]);
    volatile int sink = vaddvq_s32(s);
    (void)sink;
    return (double)iters * 8.0 * 8.0 * 2.0 / (t1 - t0) / 1e9;
}

DOTPROD double ock_peak_dotprod(long iters) {
    volatile int seed = 1;
    const int8x16_t a = vdupq_n_s8((int8_t)seed), b = vdupq_n_s8((int8_t)(seed + 1));
    int32x4_t c[16];
    for (int j = 0; j < 16; j++) c[j] = vdupq_n_s32(j);
    double t0 = ock_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 16; j++) c[j] = vdotq_s32(c[j], a, b);
    double t1 = ock_now();
    int32x4_t s = c[0];
    for (int j = 1; j < 16; j++) s = vaddq_s32(s, c[j]);
    volatile int sink = vaddvq_s32(s);
    (void)sink;
    return (double)iters * 16.0 * 16.0 * 2.0 / (t1 - t0) / 1e9;
}

#endif
