/* The DAVE sender's H.264 / H.265 framing in C: see fc_dave_h26x.h. The reference is
 * workers/dave/h26x.py (the rewrite, the leak test) and workers/dave/frame.py (seal
 * with clear ranges, seal_h26x); the footer layout is fc_dave.c's.
 *
 * The start-code scans are the reference's ``buf.find(b"\x00\x00\x01", lo, end)``:
 * memchr for the 01, then a look at the two bytes before it. Sealing works in the out
 * buffer: the encrypted pieces are moved together, encrypted in place, and moved back
 * between the clear ranges, whose bytes (the AAD) wait in a small buffer meanwhile;
 * no other copy of the plaintext is made. The usual frame (parameter sets and slice
 * header clear, then one encrypted slice body) moves nothing: one encrypted piece is
 * encrypted where it is. A retry after a start-code leak rebuilds
 * the frame from the input (a leak is rare: 2^-24 a position, one frame in ~300 of
 * 50 KB). */
#include "fc_dave_h26x.h"
#include "fc_h26x.h"

#include <stdlib.h>
#include <string.h>

#define AAD_ON_STACK 1024   /* clear bytes gathered without malloc */
#define LEAK_PAD 2          /* bytes either side of an encrypted section */
#define NONCE_LOW 0xFFFFFFu /* the nonce bits under the generation byte */

static const uint8_t LONG_START_CODE[4] = {0, 0, 0, 1};

static size_t uleb_len(uint64_t v)
{
    size_t n = 1;
    while (v >>= 7)
        n++;
    return n;
}

size_t fc_dave_h26x_max(size_t n)
{
    return n + n / 3 + 4;
}

size_t fc_dave_ranges_sealed_max(size_t len, size_t nranges)
{
    /* tag, nonce (5), two 10-byte values a range, size and magic; at most 255 */
    if (nranges >= FC_DAVE_MAX_FOOTER / 20)
        return len + FC_DAVE_MAX_FOOTER;
    size_t footer = FC_DAVE_TAG + 5 + 20 * nranges + 3;
    return len + (footer < FC_DAVE_MAX_FOOTER ? footer : FC_DAVE_MAX_FOOTER);
}

size_t fc_dave_h26x_sealed_max(size_t n)
{
    return fc_dave_h26x_max(n) + FC_DAVE_MAX_FOOTER;
}

/* ------------------------------------------------------------------ rewrite */

/* bytes_covering_h264_pps(p[0:len]): the bytes holding the slice header's first three
 * exp-Golomb values (emulation-prevention bytes skipped, as the reference walks the
 * bits), or FC_DAVE_H26X_MALFORMED for a run of 32 zero bits. */
static long pps_cover(const uint8_t *p, size_t len)
{
    size_t bit = 0, total = len * 8;
    unsigned zeros = 0, parsed = 0;
    while (bit < total && parsed < 3) {
        size_t at = bit >> 3;
        unsigned in_byte = (unsigned)(bit & 7);
        uint8_t b = p[at];
        if (in_byte == 0 && at >= 2 && b == 3 && p[at - 1] == 0 && p[at - 2] == 0) {
            bit += 8;
            continue;
        }
        if (!(b & (0x80u >> in_byte))) {
            bit++;
            if (++zeros >= 32)
                return FC_DAVE_H26X_MALFORMED;
        } else {
            parsed++;
            bit += 1 + zeros;
            zeros = 0;
        }
    }
    return (long)(bit / 8 + 1);
}

typedef struct {
    uint8_t *out;
    size_t cap, o;
    fc_dave_ranges *r;
} writer;

/* out.extend(p[0:len]); -1 when out is full. */
static int put(writer *w, const uint8_t *p, size_t len)
{
    if (len > w->cap - w->o)
        return -1;
    if (len)
        memcpy(w->out + w->o, p, len);
    w->o += len;
    return 0;
}

/* The reference's clear(): the chunk joins the last range when that ends here. */
static int put_clear(writer *w, const uint8_t *p, size_t len)
{
    fc_dave_ranges *r = w->r;
    if (r->n && r->off[r->n - 1] + r->size[r->n - 1] == w->o) {
        r->size[r->n - 1] += len;
    } else {
        if (r->n == FC_DAVE_MAX_RANGES)
            return -1;
        r->off[r->n] = w->o;
        r->size[r->n++] = len;
    }
    return put(w, p, len);
}

static long rewrite(int h265, const uint8_t *in, size_t n, writer *w)
{
    size_t header = h265 ? 2 : 1;
    if (n < 3 + header)
        return put(w, in, n) < 0 ? FC_DAVE_STOP : (long)n;
    /* next_nalu: the first 00 00 01 wholly inside [start, n - 1); the NAL unit is
     * at i + 3, behind a 4-byte start code when a 00 precedes the 3 bytes */
    long i = fc_h26x_find_sc3(in, 0, n - 1);
    while (i >= 0 && (size_t)i + 3 < n - 1) {
        size_t start = (size_t)i + 3;
        if (put_clear(w, LONG_START_CODE, 4) < 0)
            return FC_DAVE_STOP;
        i = fc_h26x_find_sc3(in, start, n - 1);
        /* i >= start: in[i - 1] is in the frame (the 01 of this unit's start code
         * when i == start) */
        size_t end = i < 0 ? n : (size_t)i - (in[i - 1] == 0);
        size_t keep = 0;
        int vcl;
        if (!h265) {
            int type = in[start] & 0x1F;
            vcl = type == 1 || type == 5;
            if (vcl) {
                long cover = pps_cover(in + start + header, n - start - header);
                if (cover < 0)
                    return cover;
                keep = header + (size_t)cover;
            }
        } else {
            vcl = (in[start] & 0x7E) >> 1 < 32;
            keep = header;
        }
        if (!vcl) {
            if (put_clear(w, in + start, end - start) < 0)
                return FC_DAVE_STOP;
            continue;
        }
        if (keep > end - start)
            return FC_DAVE_H26X_MALFORMED;
        if (put_clear(w, in + start, keep) < 0 || put(w, in + start + keep, end - start - keep) < 0)
            return FC_DAVE_STOP;
    }
    return (long)w->o;
}

long fc_dave_h26x_rewrite(int h265, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                          fc_dave_ranges *r)
{
    writer w = {out, cap, 0, r};
    r->n = 0;
    long ret = rewrite(h265, in, n, &w);
    if (ret < 0) {
        fc_wipe(out, w.o);
        r->n = 0;
    }
    return ret;
}

/* --------------------------------------------------------------- leak test */

/* bytes.find(sub, lo, end) for an end of ``lim`` - 1 (Python clamps -1 to 0). */
static int leaks(const uint8_t *s, size_t lo, size_t lim)
{
    return fc_h26x_find_sc3(s, lo, lim ? lim - 1 : 0) >= 0;
}

int fc_dave_start_code_leak(const uint8_t *sealed, size_t n, const fc_dave_ranges *r)
{
    size_t section = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t off = r->off[k], size = r->size[k];
        if (section == off) {
            section += size;
            continue;
        }
        size_t lo = section - (section < LEAK_PAD ? section : LEAK_PAD);
        size_t lim = off + LEAK_PAD < n ? off + LEAK_PAD : n;
        if (leaks(sealed, lo, lim))
            return 1;
        section = off + size;
    }
    if (section == n)
        return 0;
    return leaks(sealed, section - (section < LEAK_PAD ? section : LEAK_PAD), n);
}

/* -------------------------------------------------------------------- seal */

/* The footer's length for these ranges (footer.check_ranges and serialize's size
 * check), or FC_DAVE_STOP. *nclear: the clear bytes. */
static long footer_len(uint32_t nonce, size_t len, const fc_dave_ranges *r, size_t *nclear)
{
    if (r->n > FC_DAVE_MAX_RANGES)
        return FC_DAVE_STOP;
    size_t prev = 0, flen = FC_DAVE_TAG + uleb_len(nonce) + 3;
    *nclear = 0;
    for (size_t k = 0; k < r->n; k++) {
        if (r->off[k] < prev || r->off[k] > len || r->size[k] > len - r->off[k])
            return FC_DAVE_STOP;
        prev = r->off[k] + r->size[k];
        *nclear += r->size[k];
        flen += uleb_len(r->off[k]) + uleb_len(r->size[k]);
    }
    return flen > FC_DAVE_MAX_FOOTER ? FC_DAVE_STOP : (long)flen;
}

/* Seal buf[0:len] in place (ranges checked by footer_len, room for the footer after
 * it); returns the sealed length, or FC_DAVE_STOP with buf[0:len] wiped. */
static long seal_in_place(fc_gcm *g, uint32_t nonce, uint8_t *buf, size_t len,
                          const fc_dave_ranges *r, size_t nclear)
{
    size_t ncipher = len - nclear, gaps = 0, first_gap = 0, pos = 0;
    for (size_t k = 0; k <= r->n; k++) { /* the encrypted pieces that are not empty */
        size_t off = k < r->n ? r->off[k] : len;
        if (off > pos && gaps++ == 0)
            first_gap = pos;
        if (k < r->n)
            pos = off + r->size[k];
    }
    uint8_t small[AAD_ON_STACK], *aad = small, iv[FC_IV_LEN], tag[FC_TAG_LEN];
    int contiguous_aad = r->n == 0 || r->off[r->n - 1] + r->size[r->n - 1] == nclear;
    if (contiguous_aad) /* every clear byte in buf[0:nclear]: no gathering */
        aad = buf;
    else if (nclear > sizeof small && (aad = malloc(nclear)) == NULL)
        goto fail;
    uint8_t *cipher = buf + first_gap;
    if (!contiguous_aad) {
        size_t a = 0, c = 0;
        pos = 0;
        for (size_t k = 0; k < r->n; k++) {
            /* the piece before range k moves down to c <= its place, below range k */
            if (gaps > 1)
                memmove(buf + c, buf + pos, r->off[k] - pos);
            c += r->off[k] - pos;
            memcpy(aad + a, buf + r->off[k], r->size[k]);
            a += r->size[k];
            pos = r->off[k] + r->size[k];
        }
        if (gaps > 1) {
            memmove(buf + c, buf + pos, len - pos);
            cipher = buf;
        }
    }
    fc_dave_gcm_iv(iv, nonce);
    if (fc_gcm_seal(g, iv, aad, nclear, cipher, ncipher, cipher, tag) != 0)
        goto fail;
    if (gaps > 1) { /* the ciphertext pieces back in place, from the last one */
        size_t gathered = ncipher, end = len;
        for (size_t k = r->n; k-- > 0;) {
            size_t at = r->off[k] + r->size[k], piece = end - at;
            gathered -= piece;
            memmove(buf + at, buf + gathered, piece);
            end = r->off[k];
        }
        size_t a = 0;
        for (size_t k = 0; k < r->n; k++) {
            memcpy(buf + r->off[k], aad + a, r->size[k]);
            a += r->size[k];
        }
    }
    if (aad != buf) {
        fc_wipe(aad, nclear);
        if (aad != small)
            free(aad);
    }
    size_t o = len;
    memcpy(buf + o, tag, FC_DAVE_TAG);
    o += FC_DAVE_TAG;
    o += fc_dave_uleb_put(buf + o, nonce);
    for (size_t k = 0; k < r->n; k++) {
        o += fc_dave_uleb_put(buf + o, r->off[k]);
        o += fc_dave_uleb_put(buf + o, r->size[k]);
    }
    size_t supp = o - len + 3;
    buf[o++] = (uint8_t)supp;
    buf[o++] = 0xFA;
    buf[o++] = 0xFA;
    return (long)o;
fail:
    if (aad != buf && aad != NULL) {
        fc_wipe(aad, nclear);
        if (aad != small)
            free(aad);
    }
    fc_wipe(buf, len);
    return FC_DAVE_STOP;
}

long fc_dave_seal_ranges(fc_gcm *g, uint32_t nonce, const uint8_t *in, size_t len,
                         const fc_dave_ranges *r, uint8_t *out, size_t cap)
{
    size_t nclear;
    long flen = footer_len(nonce, len, r, &nclear);
    if (flen < 0 || cap < len || cap - len < (size_t)flen)
        return FC_DAVE_STOP;
    if (out != in && len)
        memcpy(out, in, len);
    return seal_in_place(g, nonce, out, len, r, nclear);
}

long fc_dave_seal_h26x(fc_gcm *g, uint32_t first_nonce, int h265, const uint8_t *in, size_t n,
                       uint8_t *out, size_t cap, unsigned *attempts)
{
    *attempts = 0;
    if ((first_nonce & NONCE_LOW) + (FC_DAVE_H26X_ATTEMPTS - 1) > NONCE_LOW)
        return FC_DAVE_STOP; /* the last nonce would be the next generation's */
    fc_dave_ranges r;
    for (unsigned a = 0; a < FC_DAVE_H26X_ATTEMPTS; a++) {
        /* the frame rebuilt (again, after a leak: the previous try sealed it) */
        long len = fc_dave_h26x_rewrite(h265, in, n, out, cap, &r);
        if (len < 0)
            return len;
        size_t nclear;
        long flen = footer_len(first_nonce + a, (size_t)len, &r, &nclear);
        if (flen < 0 || cap - (size_t)len < (size_t)flen) {
            fc_wipe(out, (size_t)len);
            return FC_DAVE_STOP;
        }
        long sealed = seal_in_place(g, first_nonce + a, out, (size_t)len, &r, nclear);
        if (sealed < 0)
            return sealed;
        *attempts = a + 1;
        if (!fc_dave_start_code_leak(out, (size_t)sealed, &r))
            return sealed;
    }
    return FC_DAVE_H26X_DROPPED;
}
