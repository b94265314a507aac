#ifndef OCELLUS_OCK_ATTN_H
#define OCELLUS_OCK_ATTN_H
/* Attention helpers (fp32): the fused scale + max-subtracted softmax of score rows that the
 * window and BART attention ops run between their two OpenBLAS products, the two products of
 * DaViT channel attention, and single-query attention for the decoder's cached steps. Each has a
 * plain reference (`_ref`) and SIMD variants; the variant is chosen once at load from the CPU,
 * `ock_attn_force_reference(1)` selects the reference. */
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax of score rows, in place: row i of `rows` rows (stride `ld` floats) holds `cols` raw
 * scores s. With n_i = min(cols, valid0 + i * valid_step) valid entries (n_i >= 1),
 *   s[i][j] = exp(scale * (s[i][j] - max_j<n_i s[i][j])) / sum_j<n_i(...)  for j < n_i,
 *   s[i][j] = 0                                                        for n_i <= j < cols.
 * Non-causal rows: valid0 = cols, valid_step = 0. Causal rows starting at query q0 with `offset`
 * cached keys before the queries: valid0 = offset + q0 + 1, valid_step = 1. scale > 0. */
void ock_attn_softmax_f32(float *s, size_t rows, size_t cols, size_t ld, float scale,
                          size_t valid0, size_t valid_step);
/* The reference version of `ock_attn_softmax_f32` (scalar, double-precision exp and sums). */
void ock_attn_softmax_f32_ref(float *s, size_t rows, size_t cols, size_t ld, float scale,
                              size_t valid0, size_t valid_step);
/* AVX-512 version (call only when `ock_attn_cpu_has_avx512()`). */
void ock_attn_softmax_f32_avx512(float *s, size_t rows, size_t cols, size_t ld, float scale,
                                 size_t valid0, size_t valid_step);
/* AVX2 + FMA version (call only when `ock_attn_cpu_has_avx2()`). */
void ock_attn_softmax_f32_avx2(float *s, size_t rows, size_t cols, size_t ld, float scale,
                               size_t valid0, size_t valid_step);

/* One query row against `len` cached keys, every head: for head h (columns h*hd ..< (h+1)*hd),
 *   out[h*hd + c] = sum_j p_j * v[j*ldv + h*hd + c],  p = softmax_j(scale * q_h . k[j*ldk + h*hd ..]).
 * `scores` is scratch of `len` floats. len >= 1. */
void ock_attn_query_f32(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                        size_t len, size_t heads, size_t hd, float scale, float *scores, float *out);
/* The reference version of `ock_attn_query_f32` (plain loops, double sums). */
void ock_attn_query_f32_ref(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                            size_t len, size_t heads, size_t hd, float scale, float *scores, float *out);

/* Channel-attention scores of every group, accumulated over tokens:
 *   a[(g*cg + i)*cg + j] += sum_{t<n} q[t*ld + g*cg + i] * k[t*ld + g*cg + j]
 * (q, k: n rows of groups*cg channels, row stride ld; a: groups x cg x cg, summed into, so zero it
 * first). Tokens are swept once, all groups per row. */
void ock_attn_channel_scores_f32(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a);
/* Channel attention applied to every group, with the softmaxed scores given TRANSPOSED:
 *   out[t*ldo + g*cg + i] = sum_j at[(g*cg + j)*cg + i] * v[t*ldv + g*cg + j]   (t < n, i < cg). */
void ock_attn_channel_apply_f32(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                float *out, size_t ldo);
/* Reference (plain loops, double sums), portable (float loops the compiler vectorizes; the AVX2
 * choice) and AVX-512 (cg % 16 == 0 and cg <= 64, else the portable code) versions. */
void ock_attn_channel_scores_f32_ref(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a);
void ock_attn_channel_apply_f32_ref(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                    float *out, size_t ldo);
void ock_attn_channel_scores_f32_generic(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a);
void ock_attn_channel_apply_f32_generic(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                        float *out, size_t ldo);
void ock_attn_channel_scores_f32_avx512(const float *q, const float *k, size_t ld, size_t n, size_t cg, size_t groups, float *a);
void ock_attn_channel_apply_f32_avx512(const float *v, size_t ldv, size_t n, const float *at, size_t cg, size_t groups,
                                       float *out, size_t ldo);

/* AVX-512 (hd % 16 == 0) and AVX2 + FMA (hd % 8 == 0) versions of `ock_attn_query_f32`; the
 * dispatcher uses the reference for other head sizes. */
void ock_attn_query_f32_avx512(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                               size_t len, size_t heads, size_t hd, float scale, float *scores, float *out);
void ock_attn_query_f32_avx2(const float *q, const float *k, size_t ldk, const float *v, size_t ldv,
                             size_t len, size_t heads, size_t hd, float scale, float *scores, float *out);

/* Work sharing: atomically adds `n` to *counter and returns its previous value (threads claim
 * the next items of a loop with it, so a slow or preempted thread takes fewer). */
size_t ock_attn_claim(size_t *counter, size_t n);

/* 1 if the CPU runs the AVX-512 (F) variant, else 0. */
int ock_attn_cpu_has_avx512(void);
/* 1 if the CPU runs the AVX2 + FMA variant, else 0. */
int ock_attn_cpu_has_avx2(void);
/* Forces the reference variants (1) or returns to the CPU's best (0). Not thread-safe against
 * running kernels: call it at start-up or between forward passes. */
void ock_attn_force_reference(int on);
/* The name of the variant in use: "avx512", "avx2" or "reference" (a static string). */
const char *ock_attn_variant(void);

#ifdef __cplusplus
}
#endif
#endif
