#ifndef OCELLUS_CKERNELS_H
#define OCELLUS_CKERNELS_H
/* Ocellus kernels: int8 and fp32 compute, a reference version of each plus SIMD variants. */
int ock_version(void);
#endif
