#ifndef OCELLUS_OCK_IMAGE_H
#define OCELLUS_OCK_IMAGE_H
/* Image resampling for the Florence-2 processor: Pillow's `Image.resize` (libImaging/Resample.c)
 * on 8-bit interleaved RGB, reproduced bit-exactly, plus a fused lookup-table conversion to fp32.
 *
 * The algorithm, as Pillow 13 runs it: a separable convolution, horizontal pass then vertical pass,
 * each with per-output-pixel filter windows whose support grows with the downscale factor
 * (antialiasing); weights are computed in double, normalised to sum 1, rounded to signed 22-bit
 * fixed point (PRECISION_BITS = 22); each pass accumulates in int32 starting at 1 << 21 and clips
 * (acc >> 22) to 0..255, so the intermediate image is uint8. A pass whose size is unchanged is
 * skipped. Only rows that the vertical pass reads are resampled horizontally. */
#include <stddef.h>
#include <stdint.h>

/* Filters, numbered as PIL's `Image.Resampling`. */
enum {
    OCK_RESAMPLE_BILINEAR = 2, /* triangle, support 1 */
    OCK_RESAMPLE_BICUBIC = 3,  /* Keys cubic a = -0.5, support 2 */
};

/* Scratch bytes `ock_resample_rgb8*` need for this resize (64-byte aligned pieces), or 0 when a
 * size is not positive or the filter is not one of the above. */
size_t ock_resample_scratch_bytes(int in_w, int in_h, int out_w, int out_h, int filter);

/* Resizes `src` [in_h, in_w, 3] uint8 into `dst` [out_h, out_w, 3] uint8, as Pillow does.
 * `scratch` holds at least `ock_resample_scratch_bytes(...)` bytes, 64-byte aligned.
 * Returns 0, or -1 for bad sizes or filter. The fast variant (AVX2 where the CPU has it). */
int ock_resample_rgb8(const uint8_t *src, int in_w, int in_h, uint8_t *dst, int out_w, int out_h,
                      int filter, void *scratch);

/* The same resize, then each output byte v of channel c becomes `lut[c * 256 + v]` in `dst`
 * [out_h, out_w, 3] fp32 (the processor's rescale and normalise, precomputed per byte value). */
int ock_resample_rgb8_lut_f32(const uint8_t *src, int in_w, int in_h, float *dst, int out_w, int out_h,
                              int filter, const float *lut, void *scratch);

/* The obvious version of `ock_resample_rgb8`: Pillow's loops written plainly (coefficients for
 * every row, scalar accumulation, a full-height intermediate image). For tests. */
int ock_resample_rgb8_ref(const uint8_t *src, int in_w, int in_h, uint8_t *dst, int out_w, int out_h,
                          int filter, void *scratch);

/* The variant `ock_resample_rgb8*` use: "avx2" when the CPU has it, else "generic". Chosen once. */
const char *ock_resample_variant(void);

/* Non-zero forces the generic variant (debugging, and tests comparing variants); 0 undoes it. */
void ock_resample_force_generic(int on);

#endif
