/* Counting interposer for the C allocator (tests only; see malloc_counter.h). */
#define _GNU_SOURCE
#include "malloc_counter.h"
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_int counting;
static atomic_llong calls;

static inline void note(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
}

void omc_start(void) {
    atomic_store(&calls, 0);
    atomic_store(&counting, 1);
}

int64_t omc_stop(void) {
    atomic_store(&counting, 0);
    return (int64_t)atomic_load(&calls);
}

int64_t omc_count(void) { return (int64_t)atomic_load(&calls); }

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t n) { note(); return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { note(); return __libc_memalign(align, n); }
void *valloc(size_t n) { note(); return __libc_memalign(4096, n); }

int posix_memalign(void **out, size_t align, size_t n) {
    note();
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(align, n);
    if (p == NULL && n != 0) return ENOMEM;
    *out = p;
    return 0;
}
