/* The V4L2 shim: constants Swift cannot import from linux/videodev2.h, non-variadic libv4l2 calls,
 * and YUYV / NV12 to RGB conversion (the ITU-R BT.601 limited-range integer formulas). */
#include "cv4l2shim.h"
#include <fcntl.h>
#include <libv4l2.h>
#include <linux/videodev2.h>
#include <sys/mman.h>

const unsigned long ocv_VIDIOC_QUERYCAP = VIDIOC_QUERYCAP;
const unsigned long ocv_VIDIOC_ENUM_FMT = VIDIOC_ENUM_FMT;
const unsigned long ocv_VIDIOC_ENUM_FRAMESIZES = VIDIOC_ENUM_FRAMESIZES;
const unsigned long ocv_VIDIOC_ENUM_FRAMEINTERVALS = VIDIOC_ENUM_FRAMEINTERVALS;
const unsigned long ocv_VIDIOC_G_FMT = VIDIOC_G_FMT;
const unsigned long ocv_VIDIOC_S_FMT = VIDIOC_S_FMT;
const unsigned long ocv_VIDIOC_G_PARM = VIDIOC_G_PARM;
const unsigned long ocv_VIDIOC_S_PARM = VIDIOC_S_PARM;
const unsigned long ocv_VIDIOC_REQBUFS = VIDIOC_REQBUFS;
const unsigned long ocv_VIDIOC_QUERYBUF = VIDIOC_QUERYBUF;
const unsigned long ocv_VIDIOC_QBUF = VIDIOC_QBUF;
const unsigned long ocv_VIDIOC_DQBUF = VIDIOC_DQBUF;
const unsigned long ocv_VIDIOC_STREAMON = VIDIOC_STREAMON;
const unsigned long ocv_VIDIOC_STREAMOFF = VIDIOC_STREAMOFF;

const uint32_t ocv_V4L2_PIX_FMT_RGB24 = V4L2_PIX_FMT_RGB24;
const uint32_t ocv_V4L2_PIX_FMT_YUYV = V4L2_PIX_FMT_YUYV;
const uint32_t ocv_V4L2_PIX_FMT_NV12 = V4L2_PIX_FMT_NV12;
const uint32_t ocv_V4L2_PIX_FMT_MJPEG = V4L2_PIX_FMT_MJPEG;
const uint32_t ocv_V4L2_PIX_FMT_JPEG = V4L2_PIX_FMT_JPEG;

const uint32_t ocv_V4L2_BUF_FLAG_ERROR = V4L2_BUF_FLAG_ERROR;
const uint32_t ocv_V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
const uint32_t ocv_V4L2_CAP_VIDEO_CAPTURE = V4L2_CAP_VIDEO_CAPTURE;
const uint32_t ocv_V4L2_CAP_STREAMING = V4L2_CAP_STREAMING;
const uint32_t ocv_V4L2_CAP_DEVICE_CAPS = V4L2_CAP_DEVICE_CAPS;
const uint32_t ocv_V4L2_CAP_TIMEPERFRAME = V4L2_CAP_TIMEPERFRAME;
const uint32_t ocv_V4L2_FMT_FLAG_EMULATED = V4L2_FMT_FLAG_EMULATED;
const uint32_t ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE = V4L2_BUF_TYPE_VIDEO_CAPTURE;
const uint32_t ocv_V4L2_MEMORY_MMAP = V4L2_MEMORY_MMAP;
const uint32_t ocv_V4L2_FIELD_ANY = V4L2_FIELD_ANY;
const uint32_t ocv_V4L2_FRMSIZE_TYPE_DISCRETE = V4L2_FRMSIZE_TYPE_DISCRETE;
const uint32_t ocv_V4L2_FRMIVAL_TYPE_DISCRETE = V4L2_FRMIVAL_TYPE_DISCRETE;

int ocv_open(const char *path) { return v4l2_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC); }
int ocv_close(int fd) { return v4l2_close(fd); }
int ocv_ioctl(int fd, unsigned long request, void *arg) { return v4l2_ioctl(fd, request, arg); }

void *ocv_mmap(int fd, size_t length, int64_t offset) {
    void *p = v4l2_mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
    return p == MAP_FAILED ? NULL : p;
}

int ocv_munmap(void *start, size_t length) { return v4l2_munmap(start, length); }

static inline uint8_t clamp8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* R = 1.164(Y-16) + 1.596(V-128); G = 1.164(Y-16) - 0.392(U-128) - 0.813(V-128); B = 1.164(Y-16) + 2.017(U-128),
 * in 8-bit fixed point (x256, rounded). */
static inline void yuv_px(int y, int u, int v, uint8_t *o) {
    int c = 298 * (y - 16), d = u - 128, e = v - 128;
    o[0] = clamp8((c + 409 * e + 128) >> 8);
    o[1] = clamp8((c - 100 * d - 208 * e + 128) >> 8);
    o[2] = clamp8((c + 516 * d + 128) >> 8);
}

void ocv_yuyv_to_rgb(const uint8_t *src, size_t stride, int width, int height, uint8_t *rgb) {
    for (int r = 0; r < height; r++) {
        const uint8_t *s = src + (size_t)r * stride;
        uint8_t *o = rgb + (size_t)r * width * 3;
        for (int x = 0; x + 1 < width; x += 2, s += 4, o += 6) {
            yuv_px(s[0], s[1], s[3], o);
            yuv_px(s[2], s[1], s[3], o + 3);
        }
    }
}

void ocv_nv12_to_rgb(const uint8_t *src, size_t stride, int width, int height, uint8_t *rgb) {
    const uint8_t *uv = src + (size_t)stride * height;
    for (int r = 0; r < height; r++) {
        const uint8_t *ys = src + (size_t)r * stride;
        const uint8_t *c = uv + (size_t)(r / 2) * stride;
        uint8_t *o = rgb + (size_t)r * width * 3;
        for (int x = 0; x < width; x++, o += 3)
            yuv_px(ys[x], c[x & ~1], c[(x & ~1) + 1], o);
    }
}
