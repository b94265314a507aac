/* libpng shim: setjmp-based error handling kept in C; mirrors Pillow's PngImagePlugin modes
 * (L, LA, RGB, RGBA, P, I;16 and their 16-bit raw modes) converted to RGB. */
#include "cpngshim.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

// MARK: - Error handling and input

typedef struct {
    jmp_buf jump;
    char *message;
    size_t message_len;
    const uint8_t *data;
    size_t size;
    size_t pos;
} ocp_ctx;

static void ocp_error(png_structp png, png_const_charp msg) {
    ocp_ctx *c = png_get_error_ptr(png);
    if (c->message && c->message_len) {
        strncpy(c->message, msg ? msg : "libpng error", c->message_len - 1);
        c->message[c->message_len - 1] = 0;
    }
    longjmp(c->jump, 1);
}

static void ocp_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void ocp_read(png_structp png, png_bytep out, size_t n) {
    ocp_ctx *c = png_get_io_ptr(png);
    if (n > c->size - c->pos) png_error(png, "file ends early (truncated)");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

static void set_message(char *message, size_t len, const char *text) {
    if (message && len) {
        strncpy(message, text, len - 1);
        message[len - 1] = 0;
    }
}

/* Creates the read struct over `data` with strict CRC handling. */
static png_structp ocp_open(ocp_ctx *c, png_infop *info) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, ocp_error, ocp_warning);
    if (!png) return NULL;
    *info = png_create_info_struct(png);
    if (!*info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return NULL;
    }
    png_set_read_fn(png, c, ocp_read);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    return png;
}

/* Checks the signature and opens a read struct over `data` (status OCP_OK, or the error with its
 * message). The caller still sets its own setjmp point before reading. */
static int ocp_begin(const uint8_t *data, size_t size, char *message, size_t message_len, ocp_ctx *c,
                     png_structp *png, png_infop *info) {
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_message(message, message_len, "no PNG signature");
        return OCP_NOT_PNG;
    }
    memset(c, 0, sizeof *c);
    c->message = message;
    c->message_len = message_len;
    c->data = data;
    c->size = size;
    c->pos = 0;
    *png = ocp_open(c, info);
    if (!*png) {
        set_message(message, message_len, "out of memory");
        return OCP_NO_MEMORY;
    }
    return OCP_OK;
}

// MARK: - Header

int ocp_png_header(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height, int *bit_depth,
                   int *color_type, int *interlace, char *message, size_t message_len) {
    ocp_ctx c;
    png_infop info = NULL;
    png_structp png = NULL;
    int status = ocp_begin(data, size, message, message_len, &c, &png, &info);
    if (status != OCP_OK) return status;
    if (setjmp(c.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        return OCP_CORRUPT;
    }
    png_read_info(png, info);
    *width = png_get_image_width(png, info);
    *height = png_get_image_height(png, info);
    *bit_depth = png_get_bit_depth(png, info);
    *color_type = png_get_color_type(png, info);
    *interlace = png_get_interlace_type(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    return OCP_OK;
}

// MARK: - Decode

int ocp_png_decode_rgb(const uint8_t *data, size_t size, uint8_t *out, size_t out_size, char *message,
                       size_t message_len) {
    ocp_ctx c;
    png_infop info = NULL;
    png_structp png = NULL;
    int status = ocp_begin(data, size, message, message_len, &c, &png, &info);
    if (status != OCP_OK) return status;
    /* Freed on every path, including a longjmp out of libpng. */
    png_bytep volatile image = NULL;
    png_bytepp volatile rows = NULL;
    if (setjmp(c.jump)) {
        free(image);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return OCP_CORRUPT;
    }
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if ((size_t)w * h * 3 != out_size) {
        png_destroy_read_struct(&png, &info, NULL);
        set_message(message, message_len, "output buffer does not match the image size");
        return OCP_BAD_SIZE;
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int odepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    image = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!image || !rows) {
        free(image);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        set_message(message, message_len, "out of memory");
        return OCP_NO_MEMORY;
    }
    for (uint32_t y = 0; y < h; y++) rows[y] = image + rowbytes * y;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* the chunks after the image data, up to IEND */

    const int gray16 = (color == PNG_COLOR_TYPE_GRAY) && odepth == 16;
    const int bps = odepth == 16 ? 2 : 1;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *r = rows[y];
        uint8_t *o = out + (size_t)y * w * 3;
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = r + (size_t)x * channels * bps;
            if (channels <= 2) {
                uint8_t g;
                if (gray16) {
                    unsigned v = ((unsigned)p[0] << 8) | p[1];
                    g = v > 255 ? 255 : (uint8_t)v;
                } else {
                    g = p[0]; /* 8-bit, or the high byte of 16-bit gray+alpha */
                }
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = g;
            } else {
                o[3 * x] = p[0];
                o[3 * x + 1] = p[bps];
                o[3 * x + 2] = p[2 * bps];
            }
        }
    }
    free(image);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return OCP_OK;
}
