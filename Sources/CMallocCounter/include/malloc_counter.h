#ifndef OCELLUS_MALLOC_COUNTER_H
#define OCELLUS_MALLOC_COUNTER_H
/* Test-only heap accounting: this target defines malloc, calloc, realloc, free and the aligned
 * allocators, forwarding each to glibc's __libc_* entry points, and counts the allocating calls
 * made while counting is on (from any thread). Linked only into test executables. */
#include <stdint.h>

/* Starts counting from zero. */
void omc_start(void);
/* Stops counting and returns the number of allocating calls (malloc, calloc, realloc,
 * posix_memalign, aligned_alloc, memalign, valloc) since omc_start. */
int64_t omc_stop(void);
/* Allocating calls counted so far (counting may still be on). */
int64_t omc_count(void);
#endif
