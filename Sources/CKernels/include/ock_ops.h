#ifndef OCELLUS_OCK_OPS_H
#define OCELLUS_OCK_OPS_H
/* Ocellus fp32 ops for the vision tower and the text model: layer norm, exact-erf GELU, softmax,
 * im2col for conv2d, depthwise 3x3 conv, window partition/merge, and small element-wise helpers.
 * Activations are channels-last ([H, W, C]) or token-major ([T, C]); weights keep PyTorch order.
 * Each kernel has one portable C body; on x86-64 the same body is also compiled for AVX2+FMA
 * and AVX-512, and one variant is chosen once from the CPU (ock_ops_isa). Row ranges let the
 * caller split work over threads; every function is thread-safe on disjoint output ranges. */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MARK: - Variant selection */

/* 0 = portable C (the reference), 1 = AVX2+FMA, 2 = AVX-512. */
int ock_ops_isa(void);
/* Forces a variant (clamped to what the CPU supports); -1 returns to the automatic choice.
 * For tests and debugging; not meant to be called while other threads run ops. */
void ock_ops_force_isa(int level);
/* "generic", "avx2" or "avx512". */
const char *ock_ops_isa_name(int level);

/* MARK: - Normalization and activations */

/* y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * w + b for rows [r0, r1) of a [rows, C] matrix;
 * biased variance, two passes, fp32. y may equal x. */
void ock_layernorm_f32(const float *x, float *y, const float *w, const float *b,
                       size_t C, float eps, size_t r0, size_t r1);

/* x[i] = 0.5·x·(1 + erf(x/√2)) in place for n elements (|error| <= 1e-6 for |x| <= 10;
 * exactly x above 10 and -0 below -10; NaN stays NaN). */
void ock_gelu_f32(float *x, size_t n);

/* y[i] = erf(x[i]) for n elements (max |error| about 1e-7 over all floats); y may equal x. */
void ock_erf_f32(const float *x, float *y, size_t n);

/* y[i] = exp(x[i]) (about 2 ulp; 0 below -87.3, +inf above 88.7); y may equal x. */
void ock_exp_f32(const float *x, float *y, size_t n);

/* Softmax along the last dimension of rows [r0, r1) of a [rows, N] matrix, in place:
 * x = exp(x - max) / sum. A row of all -inf becomes NaN (as in PyTorch). */
void ock_softmax_f32(float *x, size_t N, size_t r0, size_t r1);

/* MARK: - Convolution */

/* Writes output pixels [p0, p1) (p = oy·Wo + ox) of a k×k conv with zero padding as rows of
 * `panel` ([p1-p0, Cin·k·k], columns in PyTorch weight order (ci, ky, kx)), reading the
 * channels-last input [H, W, Cin]. Wo = (W + 2·pad - k)/stride + 1. */
void ock_im2col_f32(const float *in, size_t H, size_t W, size_t Cin, size_t k, size_t stride,
                    size_t pad, size_t Wo, size_t p0, size_t p1, float *panel);

/* Fills rows [r0, r1) of a [rows, N] matrix with the vector b [N]. */
void ock_fill_rows_f32(float *y, const float *b, size_t N, size_t r0, size_t r1);

/* Transposes depthwise weights [C, 1, 3, 3] into tap-major wt [9, C] (for ock_dwconv3x3_f32). */
void ock_dwconv3x3_pack_f32(const float *w, size_t C, float *wt);

/* Depthwise 3x3 conv, stride 1, zero pad 1, channels-last: output rows [y0, y1) of
 * out[y, x, c] = b[c] + Σ wt[tap, c]·in[y+dy, x+dx, c] (+ in[y, x, c] when residual != 0).
 * in [H, W, C], wt [9, C] from ock_dwconv3x3_pack_f32, out [H, W, C]; out must not overlap in. */
void ock_dwconv3x3_f32(const float *in, const float *wt, const float *b, float *out,
                       size_t H, size_t W, size_t C, int residual, size_t y0, size_t y1);

/* MARK: - Element-wise and layout */

/* out[i] = a[i] + b[i] for i in [0, n); out may equal a or b. */
void ock_add_f32(const float *a, const float *b, float *out, size_t n);

/* The rounding error of int8-quantized activations: out[r - r0, i] = x[r, i] - q[r, i] * scale[r]
 * for rows [r0, r1), where q is in a kernel table's stored form (act_offset 1: bits q ^ 0x80). */
void ock_activation_residual_f32(const float *x, size_t ldx, size_t k, const int8_t *q, size_t ldq,
                                 const float *scale, int act_offset, float *out, size_t ldo,
                                 size_t r0, size_t r1);

/* x[r, :] += row for rows [r0, r1) of a [rows, C] matrix. */
void ock_add_row_f32(float *x, const float *row, size_t C, size_t r0, size_t r1);

/* out[c] = mean over t of x[t, c] for a [T, C] matrix (fp32 accumulation). */
void ock_mean_rows_f32(const float *x, size_t T, size_t C, float *out);

/* Window partition of x [H, W, C] into windows [nWin, ws·ws, C], zero padding right/bottom;
 * windows in (row-block, col-block) order; writes windows [w0, w1). */
void ock_window_partition_f32(const float *x, size_t H, size_t W, size_t C, size_t ws,
                              float *out, size_t w0, size_t w1);

/* Inverse of ock_window_partition_f32, cropping the padding: reads windows [w0, w1) of
 * win [nWin, ws·ws, C] and writes their pixels of out [H, W, C]. */
void ock_window_merge_f32(const float *win, size_t H, size_t W, size_t C, size_t ws,
                          float *out, size_t w0, size_t w1);
/* Window batches for DaViT's blocked window attention: windows [w0, w1) of the padded
 * partition of x [H, W, C] into out [w1-w0, ws·ws, C] (window w0 first, zero padding), and the
 * inverse that ADDS windows [w0, w1) of win (window w0 first) into x [H, W, C], cropping the
 * padding (the residual connection). */
void ock_window_gather_f32(const float *x, size_t H, size_t W, size_t C, size_t ws,
                           float *out, size_t w0, size_t w1);
void ock_window_scatter_add_f32(const float *win, size_t H, size_t W, size_t C, size_t ws,
                                float *x, size_t w0, size_t w1);

#ifdef __cplusplus
}
#endif
#endif
