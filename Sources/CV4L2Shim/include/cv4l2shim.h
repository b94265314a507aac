#ifndef OCELLUS_CV4L2SHIM_H
#define OCELLUS_CV4L2SHIM_H
/* What Swift cannot import from V4L2: function-like ioctl macros and variadic v4l2_ioctl. */
int ocv_shim_version(void);
#endif
