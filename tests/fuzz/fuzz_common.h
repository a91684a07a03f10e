/* Shared by the libFuzzer targets in tests/fuzz/: fixed keys, one fc_gcm per
 * (backend, key length), and a deliberately naive C port of the pure-Python reference
 * (workers/livekit/h26x.py, workers/livekit/frame.py) that the optimised C code in
 * workers/csrc/ is checked against byte for byte.
 *
 * The port follows the Python line by line, with bytes.find() spelled as a plain
 * loop (no memchr tricks), so that it shares no code and no cleverness with the code
 * under test. Everything here is test code; nothing is linked into framecrypt. */
#ifndef FC_FUZZ_COMMON_H
#define FC_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fc_gcm.h"
#include "fc_h26x.h"
#include "fc_lk.h"

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

/* ------------------------------------------------------------------ keys ---- */

/* The keys make_corpus.py seals its seed frames with (keep in sync). */
static inline void fuzz_key(uint8_t *k, size_t keylen)
{
    for (size_t i = 0; i < keylen; i++)
        k[i] = (uint8_t)(0x40 + i * 7 + keylen);
}

static int fuzz_have_imb = -1;

/* The context for (backend, key length 16/24/32); made once, kept for the process.
 * FC_BACKEND_IMB falls back to EVP when ipsec-mb is not built in or the CPU lacks
 * AES-NI (fuzz_backends_note() says so once). */
static inline fc_gcm *fuzz_gcm(int backend, size_t keylen)
{
    static fc_gcm *cache[3][3];
    if (fuzz_have_imb < 0) {
        fuzz_have_imb = fc_gcm_imb_available();
        fprintf(stderr, "fuzz: ipsec-mb backend %s\n",
                fuzz_have_imb ? "available (EVP and IMB both fuzzed)"
                              : "NOT available: IMB requests use EVP");
    }
    if (backend == FC_BACKEND_IMB && !fuzz_have_imb)
        backend = FC_BACKEND_EVP;
    int ki = keylen == 16 ? 0 : keylen == 24 ? 1 : 2;
    if (cache[backend][ki] == NULL) {
        uint8_t k[32];
        fuzz_key(k, keylen);
        cache[backend][ki] = fc_gcm_new(k, keylen, backend);
        if (cache[backend][ki] == NULL || fc_gcm_kind(cache[backend][ki]) != backend) {
            fprintf(stderr, "fuzz: fc_gcm_new(backend %d, %zu) failed\n", backend, keylen);
            abort();
        }
    }
    return cache[backend][ki];
}

static inline size_t keylen_of(unsigned sel) { return sel == 1 ? 24 : sel == 2 ? 32 : 16; }

static inline int other_backend(int b)
{
    return b == FC_BACKEND_IMB ? FC_BACKEND_EVP : FC_BACKEND_IMB;
}

/* ------------------------------------------------- the reference, ported ---- */

/* bytes.find(pat, start, end) (end already clamped by the caller to 0..n) */
static inline long ref_find(const uint8_t *b, size_t n, const uint8_t *pat, size_t m,
                            size_t start, long end)
{
    if (end < 0)
        end = 0;
    if ((size_t)end > n)
        end = (long)n;
    for (size_t q = start; q + m <= (size_t)end; q++) {
        size_t j = 0;
        while (j < m && b[q + j] == pat[j])
            j++;
        if (j == m)
            return (long)q;
    }
    return -1;
}

static const uint8_t REF_SC3[3] = {0, 0, 1};
static const uint8_t REF_SC4[4] = {0, 0, 0, 1};
static const uint8_t REF_ZZ[2] = {0, 0};
static const uint8_t REF_ZZ3[3] = {0, 0, 3};

/* h26x.nalu_indices: -1 on leading data (MalformedFrame), else the count; the
 * indices go to *out (malloc'd, caller frees). */
static inline long ref_nalu_indices(const uint8_t *s, size_t n, size_t **out)
{
    size_t *res = xmalloc((n + 1) * sizeof *res);
    long count = 0;
    long search_length = (long)n - 3;
    long start = 0, pos = 0;
    while (pos < search_length) {
        long q = ref_find(s, n, REF_SC3, 3, (size_t)pos, search_length + 2);
        if (q < 0)
            pos = (long)n;
        else if (q - 1 >= pos && s[q - 1] == 0)
            pos = q - 1;
        else
            pos = q;
        long end = pos;
        while (end > start && s[end - 1] == 0)
            end--;
        if (start == 0) {
            if (end != start) {
                free(res);
                *out = NULL;
                return -1;
            }
        } else {
            res[count++] = (size_t)start;
        }
        long sc_len = (pos < (long)n - 3 && memcmp(s + pos, REF_SC4, 4) == 0) ? 4 : 3;
        start = pos = pos + sc_len;
    }
    *out = res;
    return count;
}

static inline int ref_is_slice(int codec, uint8_t b)
{
    if (codec == FC_H264) {
        int t = b & 0x1F;
        return t == 1 || t == 5;
    }
    int t = (b >> 1) & 0x3F;
    return t <= 9 || (t >= 16 && t <= 21);
}

/* h26x.clear_bytes: -1 for None */
static inline long ref_clear_bytes(const uint8_t *d, size_t n, int known)
{
    size_t *idx;
    long count = ref_nalu_indices(d, n, &idx);
    if (count < 0)
        return -1;
    /* Python indexes data[i]: an index == n would raise IndexError there */
    for (long k = 0; k < count; k++)
        FUZZ_CHECK(idx[k] < n, "nalu index %zu >= len %zu (IndexError in the reference)",
                   idx[k], n);
    int codec = 0;
    for (long k = 0; k < count && !codec; k++)
        if (ref_is_slice(FC_H264, d[idx[k]]))
            codec = FC_H264;
    for (long k = 0; k < count && !codec; k++)
        if (ref_is_slice(FC_H265, d[idx[k]]))
            codec = FC_H265;
    if (!codec)
        codec = known;
    long r = -1;
    if (codec)
        for (long k = 0; k < count; k++)
            if (ref_is_slice(codec, d[idx[k]])) {
                r = (long)idx[k] + 2;
                break;
            }
    free(idx);
    return r;
}

/* _splice(data, cuts, insert-byte): malloc'd result, length in *outn */
static inline uint8_t *ref_splice(const uint8_t *d, size_t n, const size_t *cuts, size_t nc,
                                  uint8_t ins, size_t *outn)
{
    uint8_t *o = xmalloc(n + nc);
    size_t last = 0, w = 0;
    for (size_t k = 0; k < nc; k++) {
        memcpy(o + w, d + last, cuts[k] - last);
        w += cuts[k] - last;
        o[w++] = ins;
        last = cuts[k];
    }
    memcpy(o + w, d + last, n - last);
    *outn = w + n - last;
    return o;
}

/* h26x.normalize_start_codes */
static inline uint8_t *ref_normalize(const uint8_t *h, size_t n, size_t *outn)
{
    size_t *cuts = xmalloc((n + 1) * sizeof *cuts), nc = 0, pos = 0;
    for (;;) {
        long q = ref_find(h, n, REF_SC3, 3, pos, (long)n);
        if (q < 0)
            break;
        if (q == 0 || h[q - 1] != 0)
            cuts[nc++] = (size_t)q;
        pos = (size_t)q + 3;
    }
    uint8_t *o = ref_splice(h, n, cuts, nc, 0, outn);
    free(cuts);
    return o;
}

/* h26x.escape */
static inline uint8_t *ref_escape(const uint8_t *b, size_t n, size_t *outn)
{
    size_t *cuts = xmalloc((n + 1) * sizeof *cuts), nc = 0, pos = 0;
    for (;;) {
        long p = ref_find(b, n, REF_ZZ, 2, pos, (long)n);
        if (p < 0 || (size_t)p + 2 >= n)
            break;
        if (b[p + 2] <= 3) {
            cuts[nc++] = (size_t)p + 2;
            pos = (size_t)p + 2;
        } else {
            pos = (size_t)p + 3;
        }
    }
    uint8_t *o = ref_splice(b, n, cuts, nc, 3, outn);
    free(cuts);
    return o;
}

/* h26x.needs_unescape: b.find(ZZ3, 0, len(b) - 1) >= 0 (a negative end counts from
 * the end in Python: for len 0 the slice is empty) */
static inline int ref_needs_unescape(const uint8_t *b, size_t n)
{
    if (n == 0)
        return 0;
    return ref_find(b, n, REF_ZZ3, 3, 0, (long)n - 1) >= 0;
}

/* h26x.unescape */
static inline uint8_t *ref_unescape(const uint8_t *b, size_t n, size_t *outn)
{
    uint8_t *o = xmalloc(n);
    size_t last = 0, pos = 0, w = 0;
    for (;;) {
        long p = ref_find(b, n, REF_ZZ3, 3, pos, (long)n);
        if (p < 0)
            break;
        memcpy(o + w, b + last, (size_t)p + 2 - last);
        w += (size_t)p + 2 - last;
        last = pos = (size_t)p + 3;
    }
    memcpy(o + w, b + last, n - last);
    *outn = w + n - last;
    return o;
}

/* The clear rule as fc_lk.c's callers pass it, resolved as codecs.clear_prefix does:
 * returns the clear byte count (may exceed len) or -1 (FC_STOP: rule not handled
 * natively); *nal = 1 when the H.26x path (normalise + escape) applies. */
static inline long ref_clear_of(const uint8_t *in, size_t len, int rule, int vp8rule, int *nal)
{
    *nal = 0;
    if (rule <= 250)
        return rule;
    if (rule == FC_CLEAR_NAL264 || rule == FC_CLEAR_NAL265) {
        long n = ref_clear_bytes(in, len, rule == FC_CLEAR_NAL264 ? FC_H264 : FC_H265);
        if (n >= 0) {
            *nal = 1;
            return n;
        }
        return vp8rule;
    }
    return -1;
}

/* frame.open_frame / parse + Sealed.open (success path), with the native callers'
 * extra condition that the plaintext fits ``cap``; decrypts with ``g``. Returns the
 * length written to out (malloc'd, *out) or FC_STOP. */
static inline long ref_lk_open(fc_gcm *g, const uint8_t *in, size_t len, int rule,
                               int vp8rule, size_t cap, uint8_t **out)
{
    *out = NULL;
    if (len == 0)
        return 0;
    int nal;
    long n = ref_clear_of(in, len, rule, vp8rule, &nal);
    if (n < 0 || (size_t)n + FC_LK_OVERHEAD > len)
        return FC_STOP;
    const uint8_t *rest = in + n;
    size_t blen = len - (size_t)n;
    uint8_t *un = NULL;
    if (nal && ref_needs_unescape(rest, blen)) {
        un = ref_unescape(rest, blen, &blen);
        rest = un;
    }
    long result = FC_STOP;
    if (blen >= FC_LK_OVERHEAD && rest[blen - 2] == FC_IV_LEN) {
        size_t ct = blen - FC_LK_OVERHEAD;
        if ((size_t)n + ct <= cap) {
            uint8_t *o = xmalloc((size_t)n + ct + 1);
            static const uint8_t one[1];
            if (fc_gcm_open(g, rest + blen - FC_LK_TRAILER, in, (size_t)n, ct ? rest : one, ct,
                            rest + ct, o + n) == 0) {
                memcpy(o, in, (size_t)n);
                result = (long)((size_t)n + ct);
                *out = o;
            } else {
                free(o);
            }
        }
    }
    free(un);
    return result;
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
