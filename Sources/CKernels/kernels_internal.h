/* Ocellus kernels: what the variant files share (not exported to Swift). */
#ifndef OCELLUS_KERNELS_INTERNAL_H
#define OCELLUS_KERNELS_INTERNAL_H
#include "ckernels.h"
#include <math.h>
#include <string.h>
#include <time.h>

/* Threshold below which a row's amax counts as zero (127/amax would overflow fp32 otherwise). */
#define OCK_AMAX_MIN 7.52316384526264e-37f /* 2^-120 */

/* MARK: - Shared scalar pieces */

/** The per-row quantization constants of the contract: scale and inverse from amax. */
static inline void ock_row_scales(float amax, float *scale, float *inv) {
    if (amax < OCK_AMAX_MIN) { *scale = 0.0f; *inv = 0.0f; return; }
    *scale = amax / 127.0f;
    *inv = 127.0f / amax;
}

/** The output of one element: ((float)acc * sa) * sw + bias, each step rounded (no FMA). */
static inline float ock_dequant(int32_t acc, float sa, float sw, const float *bias, long n) {
    float t = (float)acc * sa;
    t = t * sw;
    if (bias) t = t + bias[n];
    return t;
}

/** Seconds on the monotonic clock. */
static inline double ock_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/** Loads 4 activation bytes as one int32 (unaligned-safe). */
static inline int32_t ock_load4(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* MARK: - Variant entry points (each file defines its own, guarded by architecture) */

void ock_quantize_ref(const float *x, long ldx, long k, long row0, long row1, int8_t *q, long ldq, float *scale);
void ock_gemm_ref(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1);
double ock_peak_ref(long iters);

#if defined(__x86_64__)
void ock_quantize_avx2(const float *x, long ldx, long k, long row0, long row1, int8_t *q, long ldq, float *scale);
void ock_gemm_avx2(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1);
double ock_peak_avx2(long iters);
void ock_quantize_vnni(const float *x, long ldx, long k, long row0, long row1, int8_t *q, long ldq, float *scale);
void ock_gemm_vnni(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1);
double ock_peak_vnni(long iters);
#endif

#if defined(__aarch64__)
void ock_quantize_neon(const float *x, long ldx, long k, long row0, long row1, int8_t *q, long ldq, float *scale);
void ock_gemm_neon(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1);
double ock_peak_neon(long iters);
void ock_gemm_dotprod(const ock_gemm_args *a, long row0, long row1, long panel0, long panel1);
double ock_peak_dotprod(long iters);
#endif

#endif
