#ifndef OCELLUS_CKERNELS_H
#define OCELLUS_CKERNELS_H
/*
 * Ocellus int8 matrix kernels: per-token activation quantization, int8 GEMM/GEMV over weights in
 * the "panel16x4" layout, a peak microbenchmark, and the run-time choice of one variant
 * (reference C, AVX2, AVX-512 VNNI, NEON, NEON dot product). Mirrors nothing external: the
 * contract is Quantization/FORMAT.md "Weights" and Compute/Linear.swift `Int8Weights`.
 *
 * Numbers, identical in every variant (tests check bit equality against the reference):
 *  - Quantization of a row x[0..K) (activations and weights alike): amax = max |x|;
 *    scale = amax / 127 (fp32 division); inv = 127 / amax (fp32 division), or 0 when amax == 0;
 *    q = clamp(round_to_nearest_even(x * inv), -127, 127). A zero row gives scale 0 and q = 0.
 *    Error bound: |x - q*scale| <= scale * (0.5 + 1e-4) (the 1e-4 covers fp32 rounding of inv).
 *  - Accumulation: acc[m,n] = sum_k qa[m,k] * qw[n,k], exact in int32 (K <= 65536).
 *  - Output: y[m,n] = ((float)acc * sa[m]) * sw[n] + bias[n], each operation rounded separately
 *    (no fused multiply-add), bias term omitted when bias is NULL.
 *
 * Weight layout "panel16x4": N padded with zero rows to a multiple of 16, K a multiple of 4; the
 * byte of (n, k) is at ((n/16)*(K/4) + k/4)*64 + (n%16)*4 + k%4. One "panel" is 16 output
 * channels, K*16 bytes.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MARK: - Version */

/** Kernel ABI version (bumped when a signature below changes). */
int ock_version(void);

/* MARK: - Arguments */

/** One int8 matrix product y[M,N] = dequant(qa[M,K] . qw[N,K]^T) + bias. All pointers borrowed. */
typedef struct ock_gemm_args {
    long m;                 /**< rows of activations (tokens) */
    long k;                 /**< depth, a multiple of 4 */
    long n;                 /**< output columns (unpadded) */
    const int8_t *qa;       /**< [m, lda] quantized activations in the variant's form (act_offset) */
    long lda;               /**< row stride of qa in bytes (>= k) */
    const float *sa;        /**< [m] activation scales */
    const int8_t *qw;       /**< packed panel16x4 weights, ceil(n/16)*16*k bytes */
    const float *sw;        /**< [n] weight scales */
    const float *bias;      /**< [n] or NULL */
    float *y;               /**< [m, ldy] output */
    long ldy;               /**< row stride of y in floats (>= n) */
} ock_gemm_args;

/** Quantizes rows [row0, row1) of x[., ldx] (K = k, fp32) into q[., ldq] and scale[.]. */
typedef void (*ock_quantize_fn)(const float *x, long ldx, long k, long row0, long row1,
                                int8_t *q, long ldq, float *scale);
/**
 * Computes y for rows [row0, row1) and output panels [panel0, panel1) (panel p is columns
 * 16p..16p+15, clipped to n). Disjoint ranges may run concurrently; nothing is allocated.
 */
typedef void (*ock_gemm_fn)(const ock_gemm_args *args, long row0, long row1, long panel0, long panel1);
/**
 * Peak microbenchmark of the variant's multiply-accumulate instruction: `iters` rounds of
 * independent dependent chains; returns GOP/s (a multiply-add counts as 2 operations).
 */
typedef double (*ock_peak_fn)(long iters);

/* MARK: - Variants */

/** One kernel variant: a name and its functions. Tables are static and never freed. */
typedef struct ock_kernels {
    const char *name;       /**< "reference", "avx2", "avx512vnni", "neon", "neon-dotprod" */
    /**
     * 0: quantize stores q as int8 and gemm reads that. 1: quantize stores q + 128 as unsigned
     * bytes (the bits q ^ 0x80) and gemm reads that form (VNNI multiplies unsigned by signed
     * bytes). Always pair a table's quantize with the same table's gemm.
     */
    int act_offset;
    ock_quantize_fn quantize;
    ock_gemm_fn gemm;
    ock_peak_fn peak;
} ock_kernels;

/** Number of variants compiled for this architecture (supported or not), reference first. */
int ock_kernels_count(void);
/** Variant `i` of those compiled (0 <= i < count), or NULL. */
const ock_kernels *ock_kernels_at(int i);
/** 1 when variant `i` runs on this CPU (checked with cpuid/xgetbv or AT_HWCAP). */
int ock_kernels_supported_at(int i);
/** The variant called `name` if it is compiled and supported here, else NULL. */
const ock_kernels *ock_kernels_find(const char *name);
/** The best supported variant (by CPU detection alone, ignoring the environment). */
const ock_kernels *ock_kernels_best(void);

/**
 * The active table. Chosen once on first use: $OCELLUS_KERNELS (a variant name, e.g.
 * "reference") when set and supported, else the best variant. Thread-safe.
 */
const ock_kernels *ock_kernels_active(void);
/**
 * What happened to $OCELLUS_KERNELS at selection: 0 unset or honoured, 1 unknown name,
 * 2 known but not supported on this CPU (the best variant was used instead).
 */
int ock_kernels_env_status(void);
/**
 * The selection rule applied once to $OCELLUS_KERNELS: `request` (NULL or "" for none) when it is
 * a known, supported variant, else the best one; *status gets 0 (honoured or none), 1 (unknown
 * name) or 2 (unsupported here). Pure; exposed so tests can check the rule without the environment.
 */
const ock_kernels *ock_kernels_choose(const char *request, int *status);
/** Makes the variant `name` active; returns 0, or -1 (unknown) / -2 (unsupported) and changes nothing. */
int ock_kernels_set_active(const char *name);

/* MARK: - Dispatching wrappers (active table) */

/** Active quantize (see ock_quantize_fn). */
void ock_quantize_rows(const float *x, long ldx, long k, long row0, long row1,
                       int8_t *q, long ldq, float *scale);
/** Active GEMM/GEMV (see ock_gemm_fn). */
void ock_gemm(const ock_gemm_args *args, long row0, long row1, long panel0, long panel1);

/* MARK: - Weight packing and reference helpers */

/** Bytes of packed weights for n outputs and k inputs: ceil(n/16)*16*k. */
size_t ock_packed_bytes(long n, long k);
/**
 * Quantizes fp32 weights w[n, k] (row-major, PyTorch Linear order) per output channel with the
 * rule above and packs them into `packed` (ock_packed_bytes(n,k) bytes; pad rows zeroed),
 * writing scale[n]. k must be a multiple of 4.
 */
void ock_pack_weights(const float *w, long n, long k, int8_t *packed, float *scale);
/** The byte offset of (n, k) in the panel16x4 layout with depth k_total. */
static inline size_t ock_packed_offset(long n, long k, long k_total) {
    return ((size_t)(n >> 4) * (size_t)(k_total >> 2) + (size_t)(k >> 2)) * 64u
         + (size_t)(n & 15) * 4u + (size_t)(k & 3);
}
/**
 * The exact int32 accumulators acc[m, n] = sum_k qa[m,k]*qw[n,k] for rows [0, args->m) and all
 * n, with the obvious loops (for tests: compare a variant's int32 arithmetic exactly).
 */
void ock_gemm_acc_ref(const ock_gemm_args *args, int32_t *acc, long ldacc);

/* MARK: - Bench helper */

/** Sum of the 64-bit words of p[0, bytes) (bytes a multiple of 8): a plain streaming read, for
 *  comparing the GEMV's weight stream against the memory bandwidth of the moment. */
uint64_t ock_sum_words(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
