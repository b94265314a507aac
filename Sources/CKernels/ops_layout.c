/* fp32 layout and element-wise kernels: im2col for nn.Conv2d on channels-last input, Florence-2's
 * window partition/merge (DaViT WindowAttention's pad + view/permute and its inverse), mean over
 * tokens (spatial_avg_pool) and additions. Memory-bound loops in plain C; clang vectorizes them. */
#include "ock_ops.h"
#include <string.h>

/* MARK: - im2col */

void ock_im2col_f32(const float *in, size_t H, size_t W, size_t Cin, size_t k, size_t stride,
                    size_t pad, size_t Wo, size_t p0, size_t p1, float *panel) {
    const size_t kk = k * k, K = Cin * kk;
    for (size_t p = p0; p < p1; p++) {
        float *restrict dst = panel + (p - p0) * K;
        const size_t oy = p / Wo, ox = p % Wo;
        const long iy0 = (long)(oy * stride) - (long)pad, ix0 = (long)(ox * stride) - (long)pad;
        if (Cin < 16 && iy0 >= 0 && iy0 + (long)k <= (long)H && ix0 >= 0 && ix0 + (long)k <= (long)W) {
            /* few channels (the 3-channel stem), interior patch: contiguous writes along kx,
             * reads strided by Cin; with many channels the general loop below (contiguous
             * reads along ci) measured faster */
            const float *base = in + ((size_t)iy0 * W + (size_t)ix0) * Cin;
            for (size_t ci = 0; ci < Cin; ci++)
                for (size_t ky = 0; ky < k; ky++) {
                    const float *restrict s = base + ky * W * Cin + ci;
                    float *restrict d = dst + ci * kk + ky * k;
                    for (size_t kx = 0; kx < k; kx++) d[kx] = s[kx * Cin];
                }
            continue;
        }
        for (size_t ky = 0; ky < k; ky++) {
            const long iy = (long)(oy * stride + ky) - (long)pad;
            for (size_t kx = 0; kx < k; kx++) {
                const long ix = (long)(ox * stride + kx) - (long)pad;
                float *restrict d = dst + ky * k + kx;
                if (iy < 0 || iy >= (long)H || ix < 0 || ix >= (long)W) {
                    for (size_t ci = 0; ci < Cin; ci++) d[ci * kk] = 0.0f;
                } else {
                    const float *restrict s = in + ((size_t)iy * W + (size_t)ix) * Cin;
                    for (size_t ci = 0; ci < Cin; ci++) d[ci * kk] = s[ci];
                }
            }
        }
    }
}

void ock_fill_rows_f32(float *y, const float *b, size_t N, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) memcpy(y + r * N, b, N * sizeof(float));
}

/* MARK: - Element-wise */

void ock_add_f32(const float *a, const float *b, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ock_activation_residual_f32(const float *x, size_t ldx, size_t k, const int8_t *q, size_t ldq,
                                 const float *scale, int act_offset, float *out, size_t ldo,
                                 size_t r0, size_t r1) {
    const uint8_t flip = act_offset ? 0x80 : 0;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict xr = x + r * ldx;
        const uint8_t *restrict qr = (const uint8_t *)(q + r * ldq);
        float *restrict o = out + (r - r0) * ldo;
        const float s = scale[r];
        for (size_t i = 0; i < k; i++) o[i] = xr[i] - (float)(int8_t)(qr[i] ^ flip) * s;
    }
}

void ock_add_row_f32(float *x, const float *row, size_t C, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        float *restrict xr = x + r * C;
        for (size_t c = 0; c < C; c++) xr[c] += row[c];
    }
}

void ock_mean_rows_f32(const float *x, size_t T, size_t C, float *out) {
    for (size_t c = 0; c < C; c++) out[c] = 0.0f;
    for (size_t t = 0; t < T; t++) {
        const float *restrict xr = x + t * C;
        for (size_t c = 0; c < C; c++) out[c] += xr[c];
    }
    const float inv = T ? 1.0f / (float)T : 0.0f;
    for (size_t c = 0; c < C; c++) out[c] *= inv;
}

/* MARK: - Windows */

void ock_window_partition_f32(const float *x, size_t H, size_t W, size_t C, size_t ws,
                              float *out, size_t w0, size_t w1) {
    /* windows [w0, w1) of the full partition are the gather of that range, placed at window w0 */
    ock_window_gather_f32(x, H, W, C, ws, out + w0 * ws * ws * C, w0, w1);
}

void ock_window_merge_f32(const float *win, size_t H, size_t W, size_t C, size_t ws,
                          float *out, size_t w0, size_t w1) {
    const size_t nbw = (W + ws - 1) / ws;
    for (size_t w = w0; w < w1; w++) {
        const size_t by = w / nbw, bx = w % nbw;
        const float *src = win + w * ws * ws * C;
        for (size_t i = 0; i < ws && by * ws + i < H; i++) {
            const size_t y = by * ws + i;
            const size_t jn = (bx * ws + ws <= W) ? ws : W - bx * ws;
            /* one row of the window is jn·C contiguous floats in both layouts */
            memcpy(out + (y * W + bx * ws) * C, src + i * ws * C, jn * C * sizeof(float));
        }
    }
}

void ock_window_gather_f32(const float *x, size_t H, size_t W, size_t C, size_t ws,
                           float *out, size_t w0, size_t w1) {
    const size_t nbw = (W + ws - 1) / ws;
    for (size_t w = w0; w < w1; w++) {
        const size_t by = w / nbw, bx = w % nbw;
        float *dst = out + (w - w0) * ws * ws * C;
        const size_t jn = (bx * ws + ws <= W) ? ws : W - bx * ws;
        for (size_t i = 0; i < ws; i++) {
            const size_t y = by * ws + i;
            float *d = dst + i * ws * C;
            if (y < H) {
                memcpy(d, x + (y * W + bx * ws) * C, jn * C * sizeof(float));
                memset(d + jn * C, 0, (ws - jn) * C * sizeof(float));
            } else {
                memset(d, 0, ws * C * sizeof(float));
            }
        }
    }
}

void ock_window_scatter_add_f32(const float *win, size_t H, size_t W, size_t C, size_t ws,
                                float *x, size_t w0, size_t w1) {
    const size_t nbw = (W + ws - 1) / ws;
    for (size_t w = w0; w < w1; w++) {
        const size_t by = w / nbw, bx = w % nbw;
        const float *src = win + (w - w0) * ws * ws * C;
        const size_t jn = (bx * ws + ws <= W) ? ws : W - bx * ws;
        for (size_t i = 0; i < ws && by * ws + i < H; i++) {
            float *restrict d = x + ((by * ws + i) * W + bx * ws) * C;
            const float *restrict s = src + i * ws * C;
            for (size_t e = 0; e < jn * C; e++) d[e] += s[e];
        }
    }
}
