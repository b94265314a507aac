/* Ocellus kernels: the portable reference variant, plain C loops (the obvious version every fast
 * variant must equal bit for bit), plus weight packing and the exact int32 accumulator helper. */
#pragma STDC FP_CONTRACT OFF
#include "kernels_internal.h"

/* MARK: - Version */

int ock_version(void) { return 2; }

/* MARK: - Quantization */

void ock_quantize_ref(const float *x, long ldx, long k, long row0, long row1,
                      int8_t *q, long ldq, float *scale) {
    for (long r = row0; r < row1; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * ldq;
        float amax = 0.0f;
        for (long i = 0; i < k; i++) {
            float a = fabsf(xr[i]);
            if (a > amax) amax = a;
        }
        float s, inv;
        ock_row_scales(amax, &s, &inv);
        for (long i = 0; i < k; i++) {
            float v = nearbyintf(xr[i] * inv); /* default rounding mode: nearest, ties to even */
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            qr[i] = (int8_t)v;
        }
        scale[r] = s;
    }
}

/* MARK: - GEMM */

void ock_gemm_ref(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1) {
    long n_end = panel1 * 16 < a->n ? panel1 * 16 : a->n;
    for (long m = row0; m < row1; m++) {
        const int8_t *qa = a->qa + m * a->lda;
        for (long n = panel0 * 16; n < n_end; n++) {
            int32_t acc = 0;
            for (long k = 0; k < a->k; k++)
                acc += (int32_t)qa[k] * (int32_t)a->qw[ock_packed_offset(n, k, a->k)];
            a->y[m * a->ldy + n] = ock_dequant(acc, a->sa[m], a->sw[n], a->bias, n);
        }
    }
}

void ock_gemm_acc_ref(const ock_gemm_args *a, int32_t *acc, long ldacc) {
    for (long m = 0; m < a->m; m++)
        for (long n = 0; n < a->n; n++) {
            int32_t s = 0;
            for (long k = 0; k < a->k; k++)
                s += (int32_t)a->qa[m * a->lda + k] * (int32_t)a->qw[ock_packed_offset(n, k, a->k)];
            acc[m * ldacc + n] = s;
        }
}

/* MARK: - Peak (scalar multiply-add chains) */

double ock_peak_ref(long iters) {
    volatile uint32_t seed = 3;
    uint32_t b = seed, acc[8] = {0};
    double t0 = ock_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) acc[j] = acc[j] * b + (uint32_t)j; /* 8 independent chains */
    double t1 = ock_now();
    volatile uint32_t sink = 0;
    for (int j = 0; j < 8; j++) sink += acc[j];
    (void)sink;
    return (double)iters * 8.0 * 2.0 / (t1 - t0) / 1e9;
}

/* MARK: - Weight packing */

size_t ock_packed_bytes(long n, long k) { return (size_t)((n + 15) / 16) * 16u * (size_t)k; }

void ock_pack_weights(const float *w, long n, long k, int8_t *packed, float *scale) {
    memset(packed, 0, ock_packed_bytes(n, k));
    for (long r = 0; r < n; r++) {
        const float *wr = w + r * k;
        float amax = 0.0f;
        for (long i = 0; i < k; i++) {
            float v = fabsf(wr[i]);
            if (v > amax) amax = v;
        }
        float s, inv;
        ock_row_scales(amax, &s, &inv);
        for (long i = 0; i < k; i++) {
            float v = nearbyintf(wr[i] * inv);
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            packed[ock_packed_offset(r, i, k)] = (int8_t)v;
        }
        scale[r] = s;
    }
}

/* MARK: - Bench helper */

uint64_t ock_sum_words(const void *p, size_t bytes) {
    const uint64_t *w = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t n = bytes / 8, i = 0;
    for (; i + 4 <= n; i += 4) { s0 += w[i]; s1 += w[i + 1]; s2 += w[i + 2]; s3 += w[i + 3]; }
    for (; i < n; i++) s0 += w[i];
    return s0 + s1 + s2 + s3;
}
