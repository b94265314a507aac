#ifndef OCELLUS_CPNGSHIM_H
#define OCELLUS_CPNGSHIM_H
/* PNG decoding through libpng without exposing its setjmp/longjmp error handling to Swift: each
 * call sets up its own error handler, and any libpng error comes back as a return code plus a
 * message. Output is 8-bit RGB with Pillow's `Image.open(f).convert("RGB")` semantics. */
#include <stddef.h>
#include <stdint.h>

enum {
    OCP_OK = 0,
    OCP_NOT_PNG = -1,   /* the 8-byte signature is missing */
    OCP_CORRUPT = -2,   /* libpng stopped: message says why (CRC, zlib, truncation, bad header) */
    OCP_NO_MEMORY = -3, /* an allocation failed */
    OCP_BAD_SIZE = -4,  /* the output buffer does not match the header's size */
};

/* Reads the header only: width, height, bit depth, colour type (PNG numbering), interlace. */
int ocp_png_header(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height, int *bit_depth,
                   int *color_type, int *interlace, char *message, size_t message_len);

/* Decodes the whole file (all chunks up to IEND, CRCs and the zlib checksum verified) into `out`
 * [height, width, 3]: palette through the palette (indices past its end are black), gray
 * replicated, alpha and tRNS dropped (not composited), 16-bit samples to their high byte except
 * 16-bit gray, which is clipped to 255 (Pillow's I;16 → RGB). Adam7 is de-interlaced. */
int ocp_png_decode_rgb(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *message,
                       size_t message_len);
#endif
