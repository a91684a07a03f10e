#include "fc_h26x.h"

#include <string.h>

long fc_h26x_find_sc3(const uint8_t *p, size_t from, size_t limit)
{
    while (from + 3 <= limit) {
        const uint8_t *z = memchr(p + from + 2, 1, limit - from - 2);
        if (z == NULL)
            return -1;
        size_t q = (size_t)(z - p) - 2;
        if (p[q] == 0 && p[q + 1] == 0)
            return (long)q;
        from = q + 1;
    }
    return -1;
}

static int is_slice(int codec, uint8_t b);

/* nalu_indices(); returns the count (up to ``cap`` stored), or -1 on leading data.
 * With ``want`` (FC_H264/FC_H265), stops at the first NAL unit that is a slice of that
 * codec and puts its index in ``*found`` (the walk first_slice repeats when there were
 * more NAL units than ``cap``). */
static long nalu_indices(const uint8_t *p, size_t n, size_t *idx, size_t cap, size_t *stored,
                         int want, long *found)
{
    long count = 0;
    size_t start = 0, pos = 0;
    long search_length = (long)n - 3;
    *stored = 0;
    while ((long)pos < search_length) {
        long q = fc_h26x_find_sc3(p, pos, (size_t)search_length + 2);
        if (q < 0)
            pos = n;
        else if ((size_t)q >= pos + 1 && p[q - 1] == 0)
            pos = (size_t)q - 1;
        else
            pos = (size_t)q;
        size_t end = pos;
        while (end > start && p[end - 1] == 0)
            end--;
        if (start == 0) {
            if (end != start)
                return -1;
        } else {
            if (want && is_slice(want, p[start])) {
                *found = (long)start;
                return count;
            }
            if (*stored < cap)
                idx[(*stored)++] = start;
            count++;
        }
        size_t sc_len = 3;
        if ((long)pos < (long)n - 3 && p[pos] == 0 && p[pos + 1] == 0 && p[pos + 2] == 0 &&
            p[pos + 3] == 1)
            sc_len = 4;
        start = pos = pos + sc_len;
    }
    return count;
}

static int is_slice(int codec, uint8_t b)
{
    if (codec == FC_H264) {
        int t = b & 0x1F;
        return t == 1 || t == 5;
    }
    int t = (b >> 1) & 0x3F;
    return t <= 9 || (t >= 16 && t <= 21);
}

/* The index list is walked three times: keep it on the stack for the usual frame,
 * rescan (no allocation) for frames with very many NAL units. */
#define FC_MAX_IDX 64

static long first_slice(const uint8_t *p, size_t n, int codec, const size_t *idx,
                        size_t stored, long count)
{
    if ((long)stored == count) {
        for (size_t k = 0; k < stored; k++)
            if (idx[k] < n && is_slice(codec, p[idx[k]]))
                return (long)idx[k];
        return -1;
    }
    /* rare: more NAL units than fit: walk them again */
    long found = -1;
    size_t none;
    nalu_indices(p, n, NULL, 0, &none, codec, &found);
    return found;
}

long fc_h26x_clear_bytes(const uint8_t *p, size_t n, int known)
{
    size_t idx[FC_MAX_IDX], stored;
    long count = nalu_indices(p, n, idx, FC_MAX_IDX, &stored, 0, NULL);
    if (count < 0)
        return -1;
    int codec = 0;
    if (first_slice(p, n, FC_H264, idx, stored, count) >= 0)
        codec = FC_H264;
    else if (first_slice(p, n, FC_H265, idx, stored, count) >= 0)
        codec = FC_H265;
    else
        codec = known;
    if (codec == 0)
        return -1;
    long i = first_slice(p, n, codec, idx, stored, count);
    return i < 0 ? -1 : i + 2;
}

size_t fc_h26x_normalize_growth(const uint8_t *p, size_t n)
{
    size_t grow = 0, pos = 0;
    long q;
    while ((q = fc_h26x_find_sc3(p, pos, n)) >= 0) {
        if (q == 0 || p[q - 1] != 0)
            grow++;
        pos = (size_t)q + 3;
    }
    return grow;
}

size_t fc_h26x_normalize(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t pos = 0, last = 0, o = 0;
    long q;
    while ((q = fc_h26x_find_sc3(p, pos, n)) >= 0) {
        if (q == 0 || p[q - 1] != 0) {
            memcpy(out + o, p + last, (size_t)q - last);
            o += (size_t)q - last;
            out[o++] = 0;
            last = (size_t)q;
        }
        pos = (size_t)q + 3;
    }
    memcpy(out + o, p + last, n - last);
    return o + n - last;
}

/* The next position where an escape byte goes (before p[i], i.e. 00 00 then a byte
 * <= 3), searching from ``from`` with ``zeros`` zero bytes just before it; n if none. */
static size_t next_escape(const uint8_t *p, size_t n, size_t from, int *zeros)
{
    size_t i = from;
    int z = *zeros;
    while (i < n) {
        if (z < 2) {
            if (p[i] == 0) {
                z++;
                i++;
                continue;
            }
            z = 0;
            /* skip to the next zero byte: the vectorised part (memchr) */
            const uint8_t *nz = memchr(p + i + 1, 0, n - i - 1);
            if (nz == NULL)
                return n;
            i = (size_t)(nz - p);
            continue;
        }
        if (p[i] <= 3) {
            *zeros = 0;
            return i;
        }
        z = 0;
        i++;
    }
    return n;
}

size_t fc_h26x_escape_growth(const uint8_t *p, size_t n)
{
    size_t grow = 0, i = 0;
    int zeros = 0;
    while ((i = next_escape(p, n, i, &zeros)) < n) {
        grow++;
        /* p[i] is re-read after the inserted 03: a 00 there starts a new run */
    }
    return grow;
}

size_t fc_h26x_escape(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0, last = 0, o = 0;
    int zeros = 0;
    while ((i = next_escape(p, n, i, &zeros)) < n) {
        memcpy(out + o, p + last, i - last);
        o += i - last;
        out[o++] = 3;
        last = i;
    }
    memcpy(out + o, p + last, n - last);
    return o + n - last;
}

/* First 00 00 03 starting at or after ``from`` that ends at or before ``limit``. */
static long find_zz3(const uint8_t *p, size_t from, size_t limit)
{
    while (from + 3 <= limit) {
        const uint8_t *z = memchr(p + from + 2, 3, limit - from - 2);
        if (z == NULL)
            return -1;
        size_t q = (size_t)(z - p) - 2;
        if (p[q] == 0 && p[q + 1] == 0)
            return (long)q;
        from = q + 1;
    }
    return -1;
}

int fc_h26x_needs_unescape(const uint8_t *p, size_t n)
{
    return n >= 1 && find_zz3(p, 0, n - 1) >= 0;
}

size_t fc_h26x_unescape(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t pos = 0, last = 0, o = 0;
    long q;
    while ((q = find_zz3(p, pos, n)) >= 0) {
        memcpy(out + o, p + last, (size_t)q + 2 - last);
        o += (size_t)q + 2 - last;
        last = pos = (size_t)q + 3;
    }
    memcpy(out + o, p + last, n - last);
    return o + n - last;
}
