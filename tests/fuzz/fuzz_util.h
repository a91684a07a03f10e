/* Test helpers of the libFuzzer targets (tests/fuzz/): invariant checks, exact-size
 * heap copies, hex for messages. */
#ifndef FC_FUZZ_UTIL_H
#define FC_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant failed: print and abort (libFuzzer saves the input as crash-*). */
#define FUZZ_CHECK(cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "\nFUZZ INVARIANT FAILED at %s:%d: %s\n  ", __FILE__,       \
                    __LINE__, #cond);                                                     \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static inline void *xmalloc(size_t n)
{
    /* malloc(0) under ASan is a valid zero-byte allocation: any write to it is caught */
    void *p = malloc(n);
    if (p == NULL && n != 0)
        abort();
    return p;
}

/* An exact-size heap copy: reads past either end of it are caught by ASan (the
 * libFuzzer buffer itself only guards its end, and our frames sit after a few
 * parameter bytes). */
static inline uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

/* hex of a short prefix, for messages */
static inline const char *hexs(const uint8_t *p, size_t n)
{
    static char buf[2 * 64 + 4];
    size_t m = n < 64 ? n : 64, k;
    for (k = 0; k < m; k++)
        snprintf(buf + 2 * k, 3, "%02x", p[k]);
    if (n > m)
        strcpy(buf + 2 * k, "...");
    else
        buf[2 * k] = 0;
    return buf;
}

#endif
