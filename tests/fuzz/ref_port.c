/* A deliberately naive C port of the pure-Python reference (workers/livekit/h26x.py
 * and the clear-rule resolution of workers/livekit/codecs.py), that the optimised C
 * code in workers/csrc/ is checked against byte for byte. It follows the Python line
 * by line, bytes.find() spelled as a plain loop (no memchr tricks), so that it shares
 * no code and no cleverness with the code under test. ref_port_check.py checks it
 * against the Python itself (through the rp_* wrappers at the end).
 *
 * Built as its own translation unit *without* libFuzzer's coverage instrumentation
 * (ASan/UBSan only), so that the oracle neither slows the targets down with
 * comparison tracing nor feeds the fuzzer coverage of its own branches. */
#include "ref_port.h"

#include "fuzz_util.h"

/* bytes.find(pat, start, end), end clamped to [0, n] */
long ref_find(const uint8_t *b, size_t n, const uint8_t *pat, size_t m, size_t start, long end)
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
long ref_nalu_indices(const uint8_t *s, size_t n, size_t **out)
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

int ref_is_slice(int codec, uint8_t b)
{
    if (codec == FC_H264) {
        int t = b & 0x1F;
        return t == 1 || t == 5;
    }
    int t = (b >> 1) & 0x3F;
    return t <= 9 || (t >= 16 && t <= 21);
}

/* h26x.clear_bytes: -1 for None */
long ref_clear_bytes(const uint8_t *d, size_t n, int known)
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
static uint8_t *ref_splice(const uint8_t *d, size_t n, const size_t *cuts, size_t nc, uint8_t ins,
                           size_t *outn)
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
uint8_t *ref_normalize(const uint8_t *h, size_t n, size_t *outn)
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
uint8_t *ref_escape(const uint8_t *b, size_t n, size_t *outn)
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
int ref_needs_unescape(const uint8_t *b, size_t n)
{
    if (n == 0)
        return 0;
    return ref_find(b, n, REF_ZZ3, 3, 0, (long)n - 1) >= 0;
}

/* h26x.unescape */
uint8_t *ref_unescape(const uint8_t *b, size_t n, size_t *outn)
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
long ref_clear_of(const uint8_t *in, size_t len, int rule, int vp8rule, int *nal)
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

int ref_has_sc3(const uint8_t *b, size_t n)
{
    return ref_find(b, n, REF_SC3, 3, 0, (long)n) >= 0;
}

/* ---- for ref_port_check.py (ctypes): out has room for 2 * n + 2 bytes ---- */

long rp_clear_bytes(const uint8_t *d, size_t n, int known)
{
    return ref_clear_bytes(d, n, known);
}
int rp_needs_unescape(const uint8_t *d, size_t n) { return ref_needs_unescape(d, n); }

static size_t copy_out(uint8_t *r, size_t rn, uint8_t *out)
{
    memcpy(out, r, rn);
    free(r);
    return rn;
}
size_t rp_normalize(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_normalize(d, n, &rn);
    return copy_out(r, rn, out);
}
size_t rp_escape(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_escape(d, n, &rn);
    return copy_out(r, rn, out);
}
size_t rp_unescape(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_unescape(d, n, &rn);
    return copy_out(r, rn, out);
}
