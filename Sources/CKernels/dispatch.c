/* Ocellus kernels: CPU detection and the one active function table (cpuid/xgetbv on x86-64,
 * AT_HWCAP on aarch64), honouring $OCELLUS_KERNELS. */
#include "kernels_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

/* MARK: - Tables (reference first, then by preference, best last) */

static const ock_kernels k_tables[] = {
    {"reference", 0, ock_quantize_ref, ock_gemm_ref, ock_peak_ref},
#if defined(__x86_64__)
    {"avx2", 0, ock_quantize_avx2, ock_gemm_avx2, ock_peak_avx2},
    {"avx512vnni", 1, ock_quantize_vnni, ock_gemm_vnni, ock_peak_vnni},
#endif
#if defined(__aarch64__)
    {"neon", 0, ock_quantize_neon, ock_gemm_neon, ock_peak_neon},
    {"neon-dotprod", 0, ock_quantize_neon, ock_gemm_dotprod, ock_peak_dotprod},
#endif
};
enum { k_table_count = (int)(sizeof(k_tables) / sizeof(k_tables[0])) };

/* MARK: - CPU detection */

#if defined(__x86_64__)
static unsigned long long ock_xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static int cpu_supports(const char *name) {
    if (strcmp(name, "reference") == 0) return 1;
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = ock_xgetbv0();
    int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    if (strcmp(name, "avx2") == 0) return ymm_os && avx2 && fma;
    if (strcmp(name, "avx512vnni") == 0) return zmm_os && f && bw && vl && vnni;
    return 0;
#elif defined(__aarch64__)
    if (strcmp(name, "neon") == 0) return 1; /* Advanced SIMD is mandatory on AArch64 */
    if (strcmp(name, "neon-dotprod") == 0) {
#if defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
        return 1; /* every Apple arm64 core has the dot product (ARMv8.4) */
#else
        return 0;
#endif
    }
    return 0;
#else
    return 0;
#endif
}

/* MARK: - Lookup */

int ock_kernels_count(void) { return k_table_count; }

const ock_kernels *ock_kernels_at(int i) { return (i >= 0 && i < k_table_count) ? &k_tables[i] : NULL; }

int ock_kernels_supported_at(int i) { return (i >= 0 && i < k_table_count) ? cpu_supports(k_tables[i].name) : 0; }

static int index_of(const char *name) {
    for (int i = 0; i < k_table_count; i++)
        if (strcmp(k_tables[i].name, name) == 0) return i;
    return -1;
}

const ock_kernels *ock_kernels_find(const char *name) {
    int i = index_of(name);
    return (i >= 0 && cpu_supports(name)) ? &k_tables[i] : NULL;
}

const ock_kernels *ock_kernels_best(void) {
    for (int i = k_table_count - 1; i > 0; i--)
        if (cpu_supports(k_tables[i].name)) return &k_tables[i];
    return &k_tables[0];
}

/* MARK: - The active table */

static _Atomic(const ock_kernels *) g_active = NULL;
static int g_env_status = 0;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

const ock_kernels *ock_kernels_choose(const char *request, int *status) {
    const ock_kernels *t = ock_kernels_best();
    int st = 0;
    if (request && request[0]) {
        int i = index_of(request);
        if (i < 0) st = 1;
        else if (!cpu_supports(request)) st = 2;
        else t = &k_tables[i];
    }
    if (status) *status = st;
    return t;
}

static void choose_once(void) {
    const ock_kernels *t = ock_kernels_choose(getenv("OCELLUS_KERNELS"), &g_env_status);
    const ock_kernels *expected = NULL;
    atomic_compare_exchange_strong(&g_active, &expected, t);
}

const ock_kernels *ock_kernels_active(void) {
    const ock_kernels *t = atomic_load_explicit(&g_active, memory_order_acquire);
    if (t) return t;
    pthread_once(&g_once, choose_once);
    return atomic_load_explicit(&g_active, memory_order_acquire);
}

int ock_kernels_env_status(void) {
    pthread_once(&g_once, choose_once);
    return g_env_status;
}

int ock_kernels_set_active(const char *name) {
    pthread_once(&g_once, choose_once);
    int i = index_of(name);
    if (i < 0) return -1;
    if (!cpu_supports(name)) return -2;
    atomic_store_explicit(&g_active, &k_tables[i], memory_order_release);
    return 0;
}

/* MARK: - Dispatching wrappers */

void ock_quantize_rows(const float *x, long ldx, long k, long row0, long row1,
                       int8_t *q, long ldq, float *scale) {
    ock_kernels_active()->quantize(x, ldx, k, row0, row1, q, ldq, scale);
}

void ock_gemm(const ock_gemm_args *args, long row0, long row1, long panel0, long panel1) {
    ock_kernels_active()->gemm(args, row0, row1, panel0, panel1);
}
