#ifndef OCELLUS_CV4L2SHIM_H
#define OCELLUS_CV4L2SHIM_H
/* What Swift cannot import from V4L2 (linux/videodev2.h, libv4l2.h): the function-like VIDIOC_* and
 * v4l2_fourcc macros, re-exported as plain constants, and non-variadic wrappers around the variadic
 * v4l2_open / v4l2_ioctl. Only plain C types appear here, so the V4L2 structs come from one module
 * (CV4L2) and nothing is imported twice. Pixel converters for the native camera formats sit beside. */
#include <stddef.h>
#include <stdint.h>

/* ---- ioctl request numbers (they encode struct sizes, so never hard-code them) ---- */
extern const unsigned long ocv_VIDIOC_QUERYCAP;
extern const unsigned long ocv_VIDIOC_ENUM_FMT;
extern const unsigned long ocv_VIDIOC_ENUM_FRAMESIZES;
extern const unsigned long ocv_VIDIOC_ENUM_FRAMEINTERVALS;
extern const unsigned long ocv_VIDIOC_G_FMT;
extern const unsigned long ocv_VIDIOC_S_FMT;
extern const unsigned long ocv_VIDIOC_G_PARM;
extern const unsigned long ocv_VIDIOC_S_PARM;
extern const unsigned long ocv_VIDIOC_REQBUFS;
extern const unsigned long ocv_VIDIOC_QUERYBUF;
extern const unsigned long ocv_VIDIOC_QBUF;
extern const unsigned long ocv_VIDIOC_DQBUF;
extern const unsigned long ocv_VIDIOC_STREAMON;
extern const unsigned long ocv_VIDIOC_STREAMOFF;

/* ---- pixel formats (v4l2_fourcc) ---- */
extern const uint32_t ocv_V4L2_PIX_FMT_RGB24;
extern const uint32_t ocv_V4L2_PIX_FMT_YUYV;
extern const uint32_t ocv_V4L2_PIX_FMT_NV12;
extern const uint32_t ocv_V4L2_PIX_FMT_MJPEG;
extern const uint32_t ocv_V4L2_PIX_FMT_JPEG;

/* ---- buffer, capability, format flags and enum values ---- */
extern const uint32_t ocv_V4L2_BUF_FLAG_ERROR;
extern const uint32_t ocv_V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
extern const uint32_t ocv_V4L2_CAP_VIDEO_CAPTURE;
extern const uint32_t ocv_V4L2_CAP_STREAMING;
extern const uint32_t ocv_V4L2_CAP_DEVICE_CAPS;
extern const uint32_t ocv_V4L2_CAP_TIMEPERFRAME;
extern const uint32_t ocv_V4L2_FMT_FLAG_EMULATED;
extern const uint32_t ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE;
extern const uint32_t ocv_V4L2_MEMORY_MMAP;
extern const uint32_t ocv_V4L2_FIELD_ANY;
extern const uint32_t ocv_V4L2_FRMSIZE_TYPE_DISCRETE;
extern const uint32_t ocv_V4L2_FRMIVAL_TYPE_DISCRETE;

/* ---- libv4l2, non-variadic ---- */
/* v4l2_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC); -1 and errno on failure. */
int ocv_open(const char *path);
/* v4l2_close(fd). */
int ocv_close(int fd);
/* v4l2_ioctl(fd, request, arg). */
int ocv_ioctl(int fd, unsigned long request, void *arg);
/* v4l2_mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset); NULL (not MAP_FAILED) on failure. */
void *ocv_mmap(int fd, size_t length, int64_t offset);
/* v4l2_munmap(start, length). */
int ocv_munmap(void *start, size_t length);

/* ---- native pixel conversion to packed RGB (BT.601 limited range, integer) ---- */
/* YUYV 4:2:2 [height rows of stride bytes, Y0 U Y1 V per 2 px] -> rgb [height, width, 3]. width even. */
void ocv_yuyv_to_rgb(const uint8_t *src, size_t stride, int width, int height, uint8_t *rgb);
/* NV12 [Y plane height x stride, then UV plane height/2 x stride, U V interleaved] -> rgb [height, width, 3]. */
void ocv_nv12_to_rgb(const uint8_t *src, size_t stride, int width, int height, uint8_t *rgb);
#endif
