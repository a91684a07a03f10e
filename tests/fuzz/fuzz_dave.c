/* libFuzzer target: the Discord DAVE C core, workers/csrc/fc_dave.c (fc_dave_seal with
 * one clear prefix, fc_dave_nonce, fc_dave_open) and workers/csrc/fc_dave_h26x.c
 * (fc_dave_h26x_rewrite, fc_dave_start_code_leak, fc_dave_seal_ranges,
 * fc_dave_seal_h26x). Key: fuzz_key(16) (DAVE is AES-128), both fc_gcm backends.
 *
 * Input: 10 parameter bytes P, then the body B (a frame, sealed or not).
 *   P[0] bits 0-1  mode: 0 open, 1 seal/open round trip, 2 H.26x, 3 seal with ranges
 *        bit  2    primary backend ipsec-mb (else EVP); the other one is the twin
 *        bit  3    mode 2: H.265 (else H.264); mode 3: also seal in place (out == in)
 *        bits 4-5  capacity mode (per mode, below)
 *        bit  6    mode 1: a clear prefix longer than the frame (must stop);
 *                  mode 3: ranges are absolute (offset, size) pairs (any order), else
 *                  (gap after the previous range, size) pairs
 *        bit  7    mode 3: range fields are 16-bit little-endian (else 1 byte)
 *   P[1]           capacity adjustment; mode 1: the XOR value of the flipped byte
 *   P[2..5]        the 32-bit truncated nonce (little-endian); mode 2: the first nonce
 *   P[6..7]        mode 1: clear prefix size (% (len + 1)); mode 3: range count (% 160)
 *   P[8..9]        mode 1: the byte of the sealed frame to flip (% sealed length)
 * Every buffer handed to the code under test is an exact-size heap block; output
 * blocks are filled with 0xA5 first, to see what was written.
 *
 * The oracles are written here, apart from the code under test: a naive port of
 * workers/dave/footer.py (parse, incl. its strictness: ULEB128 values of at most 10
 * bytes and 64 bits, nonce <= 2^32 - 1, ranges in order and inside the body;
 * check_ranges; serialize, size <= 255), of frame.py (seal with any ranges, open) over
 * OpenSSL's one-shot EVP AES-128-GCM (the open checks the 8-byte tag with
 * EVP_CTRL_GCM_SET_TAG 8), and of h26x.py (next_nalu, bytes_covering_h264_pps,
 * h26x_frame, has_start_code_leak; bytes.find spelled as a loop with Python's index
 * clamping), plus seal_h26x's retry loop on top.
 *
 * 0 open: B as a sealed frame F. fc_dave_nonce(F) >= 0 iff the footer parses, and then
 *   it is the footer's nonce. fc_dave_open with the primary and the twin backend, cap
 *   (bits 4-5) 0 len (the callers'), 1 the body length, 2 that minus 1 + P[1] % 32,
 *   3 P[1]: both return the same, FC_DAVE_STOP or a length <= len, equal to the
 *   reference (parse, cap >= body, authentic) with the same plaintext; nothing is
 *   written past the body; on STOP out holds no plaintext (untouched, or all zero as
 *   fc_dave_open wipes it); F is not modified. An opened frame re-sealed with
 *   fc_dave_seal_ranges (its nonce and ranges) gives back F's body and tag, and all of
 *   F when its footer was canonically encoded.
 * 1 seal: B as the frame X, clear = P[6..7] % (len + 1) (bit 6: len + 1 + P[1] % 4,
 *   must stop). cap (bits 4-5) 0/3 fc_dave_sealed_max(len) exact (+ P[1] for 3),
 *   1 the exact sealed length (stop or the same frame), 2 below it (must stop, out
 *   untouched). The frame equals the reference seal with ranges [(0, clear)] (none
 *   for 0) byte for byte, the twin backend's and fc_dave_seal_ranges' with those
 *   ranges; its footer parses to (nonce, ranges, len); fc_dave_open (both backends,
 *   capacity len exactly and the sealed length) gives X back; one byte flipped
 *   anywhere in the sealed frame (position P[8..9], XOR P[1] or 0x5A) makes both
 *   backends' fc_dave_open stop, with no plaintext in out.
 * 2 H.26x: B as an H.264 / H.265 frame. fc_dave_h26x_rewrite into a block of
 *   fc_dave_h26x_max(n) bytes (bits 4-5: 1 the reference's length, 2 less, 3 P[1]):
 *   FC_DAVE_H26X_MALFORMED, FC_DAVE_STOP or a length <= fc_dave_h26x_max(n), with
 *   ranges in order, not overlapping, inside the output; equal to the reference
 *   h26x_frame (code, bytes, ranges), STOP exactly where the reference's output or
 *   range count had passed the capacity or FC_DAVE_MAX_RANGES when it finished (or
 *   raised); on failure out holds nothing of the frame. fc_dave_seal_h26x (first nonce
 *   P[2..5], capacity fc_dave_h26x_sealed_max(n), primary backend): STOP with 0
 *   attempts and out untouched exactly when (first & 0xFFFFFF) + 9 > 0xFFFFFF;
 *   MALFORMED exactly when the rewrite is; STOP when the rewrite stops or a footer
 *   would pass 255 bytes; else the reference's sealed frame and attempt count
 *   (1..10), fc_dave_open of it (both backends) is the rewritten frame,
 *   fc_dave_start_code_leak says no leak (and equals the reference's verdict); on
 *   STOP / MALFORMED out holds no plaintext.
 * 3 seal with ranges: up to 159 ranges read from the front of B (bits 6-7), X the
 *   rest. fc_dave_start_code_leak(X, ranges) equals the reference (at most 128
 *   ranges); fc_dave_seal_ranges (cap bits 4-5: 0 fc_dave_ranges_sealed_max, 1 the
 *   exact length, 2 less, must stop, 3 P[1]) stops exactly when check_ranges or
 *   serialize fails, more than FC_DAVE_MAX_RANGES ranges, or cap is short; else it
 *   is the reference seal byte for byte, the twin backend's too, sealing in place
 *   (bit 3) gives the same, and fc_dave_open (both backends) gives X back. */
#include <openssl/evp.h>

#include "fc_dave.h"
#include "fc_dave_h26x.h"
#include "fuzz_common.h"

#define NP 10
#define FILL 0xA5
#define MAX_NONCE 0xFFFFFFFFull

static unsigned long n_runs, n_parsed, n_opened, n_open_stop, n_sealed, n_flip_stop, n_rw,
    n_rw_malformed, n_rw_stop, n_h26x_sealed, n_h26x_retry, n_h26x_gen_stop, n_h26x_other_stop,
    n_ranges_sealed, n_ranges_stop, n_leak;

static void report(void)
{
    fprintf(stderr,
            "fuzz_dave stats: runs %lu, nonce parsed %lu, opened %lu (stopped %lu), "
            "sealed+opened %lu (flips stopped %lu), h26x rewritten %lu (malformed %lu, "
            "stopped %lu), h26x sealed %lu (retried %lu; stops: generation %lu, other %lu), "
            "ranges sealed %lu (stopped %lu), leak verdicts true %lu\n",
            n_runs, n_parsed, n_opened, n_open_stop, n_sealed, n_flip_stop, n_rw,
            n_rw_malformed, n_rw_stop, n_h26x_sealed, n_h26x_retry, n_h26x_gen_stop,
            n_h26x_other_stop, n_ranges_sealed, n_ranges_stop, n_leak);
}

static uint32_t u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned u16le(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

static uint8_t *filled(size_t n)
{
    uint8_t *p = xmalloc(n);
    if (n)
        memset(p, FILL, n);
    return p;
}

/* memcmp for n >= 0 bytes (either pointer may be that of an empty block) */
static int eq(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static int all_are(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/* on STOP: out untouched or wiped whole */
static int no_plaintext(const uint8_t *p, size_t n)
{
    return all_are(p, n, FILL) || all_are(p, n, 0);
}

/* a wiped prefix (any length), the rest untouched */
static int wiped_prefix(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] == 0)
        i++;
    return all_are(p + i, n - i, FILL);
}

/* ------------------------------------------------- a growable byte string ---- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} bstr;

/* s->b is never NULL after the first call (no NULL + 0 for UBSan, nor memcmp(NULL)) */
static void bs_put(bstr *s, const uint8_t *p, size_t n)
{
    if (s->b == NULL || s->n + n > s->cap) {
        size_t c = s->cap ? s->cap : 64;
        while (c < s->n + n)
            c *= 2;
        uint8_t *q = xmalloc(c);
        if (s->n)
            memcpy(q, s->b, s->n);
        free(s->b);
        s->b = q;
        s->cap = c;
    }
    if (n)
        memcpy(s->b + s->n, p, n);
    s->n += n;
}

/* a list of (offset, size) */
typedef struct {
    size_t n, cap;
    uint64_t *off, *size;
} rlist;

static void rl_push(rlist *r, uint64_t off, uint64_t size)
{
    if (r->n == r->cap) {
        size_t c = r->cap ? 2 * r->cap : 16;
        uint64_t *o = xmalloc(c * sizeof *o), *s = xmalloc(c * sizeof *s);
        if (r->n) {
            memcpy(o, r->off, r->n * sizeof *o);
            memcpy(s, r->size, r->n * sizeof *s);
        }
        free(r->off);
        free(r->size);
        r->off = o;
        r->size = s;
        r->cap = c;
    }
    r->off[r->n] = off;
    r->size[r->n++] = size;
}

static void rl_free(rlist *r)
{
    free(r->off);
    free(r->size);
}

/* for the code under test (callers make sure n <= FC_DAVE_MAX_RANGES) */
static void to_fc(const rlist *r, fc_dave_ranges *f)
{
    FUZZ_CHECK(r->n <= FC_DAVE_MAX_RANGES, "to_fc: %zu ranges", r->n);
    f->n = r->n;
    for (size_t k = 0; k < r->n; k++) {
        f->off[k] = (size_t)r->off[k];
        f->size[k] = (size_t)r->size[k];
    }
}

/* ------------------------------------ the reference: leb128.py, footer.py ---- */

typedef unsigned __int128 u128;

/* leb128.decode(buf, *pos, end): 0, or -1 where it raises MalformedFrame */
static int ref_leb_decode(const uint8_t *buf, size_t *pos, size_t end, uint64_t *v)
{
    u128 value = 0;
    unsigned shift = 0;
    for (size_t i = 0; i < 10; i++) {
        if (*pos + i >= end)
            return -1; /* truncated */
        uint8_t byte = buf[*pos + i];
        value |= (u128)(byte & 0x7F) << shift;
        shift += 7;
        if (!(byte & 0x80)) {
            if (value >> 64)
                return -1; /* over 64 bits */
            *v = (uint64_t)value;
            *pos += i + 1;
            return 0;
        }
    }
    return -1; /* longer than 10 bytes */
}

static void ref_leb_encode(bstr *s, uint64_t v)
{
    for (;;) {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v) {
            b |= 0x80;
            bs_put(s, &b, 1);
        } else {
            bs_put(s, &b, 1);
            return;
        }
    }
}

typedef struct {
    uint8_t tag[8];
    uint64_t nonce;
    rlist ranges;
    size_t body;
} ref_footer;

/* footer.check_ranges: 0 or -1 (MalformedFrame) */
static int ref_check_ranges(const rlist *r, u128 body_len)
{
    u128 prev_end = 0;
    for (size_t k = 0; k < r->n; k++) {
        if ((u128)r->off[k] < prev_end || (u128)r->off[k] + r->size[k] > body_len)
            return -1;
        prev_end = (u128)r->off[k] + r->size[k];
    }
    return 0;
}

/* footer.parse: 0 (f filled; rl_free(&f->ranges) after) or -1 (MalformedFrame) */
static int ref_parse(const uint8_t *frame, size_t n, ref_footer *f)
{
    memset(f, 0, sizeof *f);
    const size_t min_supplemental = 8 + 1 + 2;
    if (n < min_supplemental)
        return -1;
    if (frame[n - 2] != 0xFA || frame[n - 1] != 0xFA)
        return -1;
    size_t supplemental = frame[n - 3];
    if (supplemental < min_supplemental || supplemental > n)
        return -1;
    size_t start = n - supplemental;
    memcpy(f->tag, frame + start, 8);
    size_t end = n - 3, pos = start + 8;
    if (ref_leb_decode(frame, &pos, end, &f->nonce) < 0)
        return -1;
    if (f->nonce > MAX_NONCE)
        return -1;
    while (pos < end) {
        uint64_t off, size;
        if (ref_leb_decode(frame, &pos, end, &off) < 0 ||
            ref_leb_decode(frame, &pos, end, &size) < 0)
            goto bad;
        rl_push(&f->ranges, off, size);
    }
    if (ref_check_ranges(&f->ranges, start) < 0)
        goto bad;
    f->body = start;
    return 0;
bad:
    rl_free(&f->ranges);
    memset(f, 0, sizeof *f);
    return -1;
}

/* ----------------------------------------- the reference: frame.py + EVP ---- */

static void ref_iv(uint8_t iv[12], uint32_t nonce)
{
    memset(iv, 0, 12);
    for (int i = 0; i < 4; i++)
        iv[8 + i] = (uint8_t)(nonce >> (8 * i));
}

static void ref_gcm_seal(uint32_t nonce, const uint8_t *aad, size_t aadlen, const uint8_t *pt,
                         size_t len, uint8_t *ct, uint8_t tag[16])
{
    uint8_t key[16], iv[12];
    fuzz_key(key, 16);
    ref_iv(iv, nonce);
    ref_evp_gcm_seal(EVP_aes_128_gcm(), key, iv, aad, aadlen, pt, len, ct, tag);
}

/* 0 and the plaintext when the 8-byte tag authenticates, else -1 */
static int ref_gcm_open8(uint32_t nonce, const uint8_t *aad, size_t aadlen, const uint8_t *ct,
                         size_t len, const uint8_t tag8[8], uint8_t *pt)
{
    uint8_t key[16], iv[12], t[8], fin[16];
    int n = 0;
    fuzz_key(key, 16);
    ref_iv(iv, nonce);
    memcpy(t, tag8, 8);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = c && EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv) == 1 &&
             (aadlen == 0 || EVP_DecryptUpdate(c, NULL, &n, aad, (int)aadlen) == 1) &&
             (len == 0 || EVP_DecryptUpdate(c, pt, &n, ct, (int)len) == 1) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 8, t) == 1 &&
             EVP_DecryptFinal_ex(c, fin, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

/* frame._split: the clear bytes and the others of frame[0:end] */
static void ref_split(const uint8_t *frame, const rlist *r, size_t end, bstr *clear,
                      bstr *other)
{
    size_t pos = 0;
    for (size_t k = 0; k < r->n; k++) {
        bs_put(other, frame + pos, (size_t)r->off[k] - pos);
        bs_put(clear, frame + r->off[k], (size_t)r->size[k]);
        pos = (size_t)(r->off[k] + r->size[k]);
    }
    bs_put(other, frame + pos, end - pos);
}

/* frame._interleave */
static void ref_interleave(const rlist *r, const uint8_t *clear, const uint8_t *other,
                           size_t nother, bstr *out)
{
    size_t ci = 0, oi = 0, pos = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t n = (size_t)r->off[k] - pos;
        bs_put(out, other + oi, n);
        oi += n;
        bs_put(out, clear + ci, (size_t)r->size[k]);
        ci += (size_t)r->size[k];
        pos = (size_t)(r->off[k] + r->size[k]);
    }
    bs_put(out, other + oi, nother - oi);
}

/* frame.seal(key, nonce, x, ranges): 0 and the frame in *out, or -1 where the
 * reference raises (check_ranges: MalformedFrame; serialize: ValueError over 255) */
static int ref_seal(uint32_t nonce, const uint8_t *x, size_t len, const rlist *r, bstr *out)
{
    if (ref_check_ranges(r, len) < 0)
        return -1;
    bstr clear = {0}, plain = {0}, foot = {0};
    ref_split(x, r, len, &clear, &plain);
    uint8_t *ct = xmalloc(plain.n + 16), tag[16];
    ref_gcm_seal(nonce, clear.b, clear.n, plain.b, plain.n, ct, tag);
    /* footer.serialize */
    bs_put(&foot, tag, 8);
    ref_leb_encode(&foot, nonce);
    for (size_t k = 0; k < r->n; k++) {
        ref_leb_encode(&foot, r->off[k]);
        ref_leb_encode(&foot, r->size[k]);
    }
    size_t size = foot.n + 1 + 2;
    int ok = size <= 0xFF;
    if (ok) {
        uint8_t tail[3] = {(uint8_t)size, 0xFA, 0xFA};
        bs_put(&foot, tail, 3);
        ref_interleave(r, clear.b, ct, plain.n, out);
        bs_put(out, foot.b, foot.n);
    }
    free(ct);
    free(clear.b);
    free(plain.b);
    free(foot.b);
    return ok ? 0 : -1;
}

/* frame.open_frame: 0 and the plaintext (f->body bytes) in *pt, or -1 */
static int ref_open(const uint8_t *frame, size_t n, ref_footer *f, int *parsed, bstr *pt)
{
    *parsed = ref_parse(frame, n, f) == 0;
    if (!*parsed)
        return -1;
    bstr clear = {0}, cipher = {0};
    ref_split(frame, &f->ranges, f->body, &clear, &cipher);
    uint8_t *plain = xmalloc(cipher.n + 1);
    int ok = ref_gcm_open8((uint32_t)f->nonce, clear.b, clear.n, cipher.b, cipher.n,
                           frame + f->body, plain) == 0;
    if (ok)
        ref_interleave(&f->ranges, clear.b, plain, cipher.n, pt);
    free(plain);
    free(clear.b);
    free(cipher.b);
    return ok ? 0 : -1;
}

/* --------------------------------------------------- the reference: h26x.py ---- */

/* bytes.find(b"\x00\x00\x01", start, end) with Python's clamping of end */
static long long py_find3(const uint8_t *b, size_t n, long long start, long long end)
{
    if (end < 0)
        end += (long long)n;
    if (end < 0)
        end = 0;
    if (end > (long long)n)
        end = (long long)n;
    for (long long i = start; i + 3 <= end; i++)
        if (b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1)
            return i;
    return -1;
}

/* h26x.next_nalu: the index of the NAL unit, *sclen 3 or 4; -1 for None */
static long long ref_next_nalu(const uint8_t *b, size_t n, size_t start, int *sclen)
{
    long long i = py_find3(b, n, (long long)start, (long long)n - 1);
    if (i < 0)
        return -1;
    *sclen = i >= 1 && b[i - 1] == 0 ? 4 : 3;
    return i + 3;
}

/* h26x.bytes_covering_h264_pps; -1 for MalformedFrame */
static long long ref_pps(const uint8_t *payload, size_t len)
{
    unsigned long long bit = 0, zeros = 0, parsed = 0, total_bits = (unsigned long long)len * 8;
    while (bit < total_bits && parsed < 3) {
        unsigned long long byte_at = bit / 8, in_byte = bit % 8;
        uint8_t byte = payload[byte_at];
        if (in_byte == 0 && byte_at >= 2 && byte == 3 && payload[byte_at - 1] == 0 &&
            payload[byte_at - 2] == 0) {
            bit += 8;
            continue;
        }
        if (!(byte & (0x80 >> in_byte))) {
            zeros += 1;
            bit += 1;
            if (zeros >= 32)
                return -1;
        } else {
            parsed += 1;
            bit += 1 + zeros;
            zeros = 0;
        }
    }
    return (long long)(bit / 8 + 1);
}

/* h26x's clear(): the chunk joins the last range when that ends where out ends */
static void ref_clear(bstr *out, rlist *r, const uint8_t *p, size_t n)
{
    if (r->n && r->off[r->n - 1] + r->size[r->n - 1] == out->n)
        r->size[r->n - 1] += n;
    else
        rl_push(r, out->n, n);
    bs_put(out, p, n);
}

/* h26x.h26x_frame: the length (out, r filled), or -2 (MalformedFrame; out and r as far
 * as they got when it raised) */
static long ref_h26x_frame(int h265, const uint8_t *data, size_t n, bstr *out, rlist *r)
{
    static const uint8_t long_sc[4] = {0, 0, 0, 1};
    size_t header = h265 ? 2 : 1;
    bs_put(out, data, 0); /* out->b allocated even when nothing is written */
    if (n < 3 + header) {
        bs_put(out, data, n);
        return (long)n;
    }
    int sclen = 0;
    long long found = ref_next_nalu(data, n, 0, &sclen);
    while (found >= 0 && found < (long long)n - 1) {
        size_t start = (size_t)found;
        ref_clear(out, r, long_sc, 4);
        found = ref_next_nalu(data, n, start, &sclen);
        size_t end = found >= 0 ? (size_t)(found - sclen) : n;
        int vcl;
        size_t keep = 0;
        if (!h265) {
            vcl = (data[start] & 0x1F) == 1 || (data[start] & 0x1F) == 5;
            if (vcl) {
                long long c = ref_pps(data + start + header, n - (start + header));
                if (c < 0)
                    return -2;
                keep = header + (size_t)c;
            }
        } else {
            vcl = ((data[start] & 0x7E) >> 1) < 32;
            keep = header;
        }
        if (!vcl) {
            ref_clear(out, r, data + start, end - start);
            continue;
        }
        if (start + keep > end)
            return -2;
        ref_clear(out, r, data + start, keep);
        bs_put(out, data + start + keep, end - start - keep);
    }
    return (long)out->n;
}

/* h26x.has_start_code_leak */
static int ref_leak(const uint8_t *sealed, size_t n, const rlist *r)
{
    const long long pad = 2;
    long long section = 0;
    for (size_t k = 0; k < r->n; k++) {
        long long offset = (long long)r->off[k], size = (long long)r->size[k];
        if (section == offset) {
            section += size;
            continue;
        }
        long long lo = section - (section < pad ? section : pad);
        long long lim = offset + pad < (long long)n ? offset + pad : (long long)n;
        if (py_find3(sealed, n, lo, lim - 1) >= 0)
            return 1;
        section = offset + size;
    }
    if (section == (long long)n)
        return 0;
    long long lo = section - (section < pad ? section : pad);
    return py_find3(sealed, n, lo, (long long)n - 1) >= 0;
}

/* ------------------------------------------------------------------ mode 0 ---- */

/* fc_dave_open of F with both backends into a fresh block of cap bytes each; checks
 * the result against the reference and the contract; returns the result, *out the
 * primary's plaintext block (free it) */
static long open_both(int be, const uint8_t *F, size_t len, size_t cap, uint8_t **out)
{
    uint8_t *o1 = filled(cap), *o2 = filled(cap), *keep = dup_exact(F, len);
    long r1 = fc_dave_open(fuzz_gcm(be, 16), F, len, o1, cap);
    long r2 = fc_dave_open(fuzz_gcm(other_backend(be), 16), F, len, o2, cap);
    FUZZ_CHECK(eq(keep, F, len), "fc_dave_open modified its input");
    FUZZ_CHECK(r1 == FC_DAVE_STOP || (r1 >= 0 && (size_t)r1 <= len && (size_t)r1 <= cap),
               "fc_dave_open = %ld, len %zu cap %zu", r1, len, cap);
    FUZZ_CHECK(r1 == r2, "backends disagree: %ld vs %ld; F=%s", r1, r2, hexs(F, len));

    ref_footer f;
    int parsed;
    bstr pt = {0};
    int ok = ref_open(F, len, &f, &parsed, &pt) == 0;
    long want = ok && cap >= f.body ? (long)f.body : FC_DAVE_STOP;
    FUZZ_CHECK(r1 == want, "fc_dave_open = %ld, reference %ld (parsed %d, body %zu, cap %zu); F=%s",
               r1, want, parsed, f.body, cap, hexs(F, len));
    if (r1 >= 0) {
        FUZZ_CHECK(pt.n == (size_t)r1 && eq(o1, pt.b, (size_t)r1),
                   "fc_dave_open plaintext differs from the reference; F=%s", hexs(F, len));
        FUZZ_CHECK(eq(o1, o2, (size_t)r1), "backends' plaintexts differ");
        FUZZ_CHECK(all_are(o1 + r1, cap - (size_t)r1, FILL) &&
                       all_are(o2 + r1, cap - (size_t)r1, FILL),
                   "fc_dave_open wrote past the body (%ld of cap %zu)", r1, cap);
    } else {
        FUZZ_CHECK(no_plaintext(o1, cap) && no_plaintext(o2, cap),
                   "fc_dave_open stopped but out holds something (cap %zu): %s", cap,
                   hexs(o1, cap));
    }
    rl_free(&f.ranges);
    free(pt.b);
    free(o2);
    free(keep);
    *out = o1;
    return r1;
}

static void mode_open(const uint8_t *P, const uint8_t *F, size_t len, int be)
{
    ref_footer f;
    int parsed = ref_parse(F, len, &f) == 0;
    long long nn = fc_dave_nonce(F, len);
    FUZZ_CHECK((nn >= 0) == parsed, "fc_dave_nonce = %lld, reference parse %s; F=%s", nn,
               parsed ? "ok" : "fails", hexs(F, len));
    if (parsed) {
        n_parsed++;
        FUZZ_CHECK((uint64_t)nn == f.nonce, "fc_dave_nonce = %lld, footer's %llu", nn,
                   (unsigned long long)f.nonce);
    }
    size_t body = parsed ? f.body : len, cap, d = 1 + P[1] % 32;
    switch ((P[0] >> 4) & 3) {
    case 0: cap = len; break;
    case 1: cap = body; break;
    case 2: cap = body > d ? body - d : 0; break;
    default: cap = P[1]; break;
    }
    uint8_t *out;
    long r = open_both(be, F, len, cap, &out);
    if (r < 0) {
        n_open_stop++;
    } else {
        n_opened++;
        /* re-seal the plaintext with the footer's nonce and ranges */
        fc_dave_ranges fr;
        to_fc(&f.ranges, &fr);
        size_t scap = fc_dave_ranges_sealed_max((size_t)r, fr.n);
        uint8_t *s = filled(scap), *pt = dup_exact(out, (size_t)r);
        long rs = fc_dave_seal_ranges(fuzz_gcm(be, 16), (uint32_t)f.nonce, pt, (size_t)r, &fr,
                                      s, scap);
        FUZZ_CHECK(rs > 0 && (size_t)rs <= len, "re-seal = %ld (len %zu)", rs, len);
        FUZZ_CHECK(eq(s, F, (size_t)r + FC_DAVE_TAG),
                   "re-sealed body/tag differ from the opened frame; F=%s", hexs(F, len));
        if ((size_t)rs == len)
            FUZZ_CHECK(eq(s, F, len), "re-sealed footer differs (same length)");
        free(s);
        free(pt);
    }
    free(out);
    rl_free(&f.ranges);
}

/* ------------------------------------------------------------------ mode 1 ---- */

static void mode_seal(const uint8_t *P, const uint8_t *X, size_t len, int be)
{
    uint32_t nonce = u32le(P + 2);
    int too_long = (P[0] >> 6) & 1;
    size_t clear = too_long ? len + 1 + P[1] % 4 : u16le(P + 6) % (len + 1);
    rlist rr = {0};
    if (clear && !too_long)
        rl_push(&rr, 0, clear);
    bstr want = {0};
    int wok = !too_long && ref_seal(nonce, X, len, &rr, &want) == 0;
    FUZZ_CHECK(too_long || wok, "reference seal failed (one prefix of %zu)", clear);
    size_t max = fc_dave_sealed_max(len), cap;
    int cm = (P[0] >> 4) & 3;
    switch (cm) {
    case 0: cap = max; break;
    case 1: cap = wok ? want.n : max; break;
    case 2: cap = wok ? want.n - 1 - P[1] % (want.n < 32 ? want.n : 32) : max; break;
    default: cap = max + P[1]; break;
    }
    uint8_t *out = filled(cap);
    long r = fc_dave_seal(fuzz_gcm(be, 16), nonce, X, len, clear, out, cap);
    if (too_long) {
        FUZZ_CHECK(r == FC_DAVE_STOP && all_are(out, cap, FILL),
                   "fc_dave_seal with clear %zu > len %zu = %ld", clear, len, r);
        goto done;
    }
    if (cap < want.n) {
        FUZZ_CHECK(r == FC_DAVE_STOP && all_are(out, cap, FILL),
                   "fc_dave_seal into %zu bytes (needs %zu) = %ld, or wrote", cap, want.n, r);
        goto done;
    }
    if (cap < max && r == FC_DAVE_STOP) { /* below fc_dave_sealed_max: may stop */
        FUZZ_CHECK(all_are(out, cap, FILL), "a stopped fc_dave_seal wrote");
        goto done;
    }
    FUZZ_CHECK(r >= 0 && (size_t)r == want.n && eq(out, want.b, want.n),
               "fc_dave_seal (clear %zu, nonce %u) = %ld differs from the reference (%zu); X=%s",
               clear, nonce, r, want.n, hexs(X, len));
    FUZZ_CHECK(all_are(out + r, cap - (size_t)r, FILL), "fc_dave_seal wrote past its frame");
    size_t n = (size_t)r;
    /* the twin backend and fc_dave_seal_ranges seal the same bytes */
    {
        size_t c2 = fc_dave_sealed_max(len);
        uint8_t *o2 = filled(c2);
        long r2 = fc_dave_seal(fuzz_gcm(other_backend(be), 16), nonce, X, len, clear, o2, c2);
        FUZZ_CHECK(r2 == r && eq(o2, out, n), "twin backend's seal differs");
        free(o2);
        fc_dave_ranges fr;
        to_fc(&rr, &fr);
        size_t c3 = fc_dave_ranges_sealed_max(len, fr.n);
        uint8_t *o3 = filled(c3);
        long r3 = fc_dave_seal_ranges(fuzz_gcm(be, 16), nonce, X, len, &fr, o3, c3);
        FUZZ_CHECK(r3 == r && eq(o3, out, n),
                   "fc_dave_seal_ranges [(0, %zu)] = %ld differs from fc_dave_seal", clear, r3);
        free(o3);
    }
    uint8_t *S = dup_exact(out, n);
    FUZZ_CHECK(fc_dave_nonce(S, n) == (long long)nonce, "fc_dave_nonce of a sealed frame");
    ref_footer f;
    FUZZ_CHECK(ref_parse(S, n, &f) == 0 && f.nonce == nonce && f.body == len &&
                   f.ranges.n == rr.n && (rr.n == 0 || (f.ranges.off[0] == 0 &&
                                                        f.ranges.size[0] == clear)),
               "the sealed footer does not parse back");
    rl_free(&f.ranges);
    /* open: exactly len bytes (primary), the callers' n bytes (twin) */
    uint8_t *o = filled(len), *o2 = filled(n);
    long ro = fc_dave_open(fuzz_gcm(be, 16), S, n, o, len);
    long ro2 = fc_dave_open(fuzz_gcm(other_backend(be), 16), S, n, o2, n);
    FUZZ_CHECK(ro == (long)len && ro2 == (long)len && eq(o, X, len) &&
                   eq(o2, X, len),
               "seal/open round trip: %ld / %ld, len %zu; X=%s", ro, ro2, len, hexs(X, len));
    free(o);
    free(o2);
    n_sealed++;
    /* one byte flipped anywhere: both backends stop, no plaintext */
    {
        size_t at = u16le(P + 8) % n;
        S[at] ^= P[1] ? P[1] : 0x5A;
        uint8_t *p1;
        long rf = open_both(be, S, n, n, &p1);
        FUZZ_CHECK(rf == FC_DAVE_STOP, "a frame with byte %zu of %zu flipped opened (%ld)", at,
                   n, rf);
        n_flip_stop++;
        free(p1);
    }
    free(S);
done:
    free(out);
    free(want.b);
    rl_free(&rr);
}

/* ------------------------------------------------------------------ mode 2 ---- */

static void check_ranges_fc(const fc_dave_ranges *r, size_t len, const char *what)
{
    size_t prev = 0;
    for (size_t k = 0; k < r->n; k++) {
        FUZZ_CHECK(r->off[k] >= prev && r->off[k] <= len && r->size[k] <= len - r->off[k],
                   "%s: range %zu (%zu, %zu) out of order or outside %zu bytes", what, k,
                   r->off[k], r->size[k], len);
        prev = r->off[k] + r->size[k];
    }
}

static int same_ranges(const fc_dave_ranges *a, const rlist *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t k = 0; k < a->n; k++)
        if (a->off[k] != b->off[k] || a->size[k] != b->size[k])
            return 0;
    return 1;
}

/* seal_h26x as the C does it, over the reference: code, frame into *out, attempts */
static long ref_seal_h26x(uint32_t first, long rw, const bstr *rewritten, const rlist *r,
                          bstr *out, unsigned *attempts)
{
    *attempts = 0;
    if ((first & 0xFFFFFFu) + (FC_DAVE_H26X_ATTEMPTS - 1) > 0xFFFFFFu)
        return FC_DAVE_STOP; /* the C path stops before the generation would end */
    if (r->n > FC_DAVE_MAX_RANGES) /* the rewrite stops (before it would raise) */
        return FC_DAVE_STOP;
    if (rw < 0)
        return FC_DAVE_H26X_MALFORMED;
    for (unsigned a = 0; a < FC_DAVE_H26X_ATTEMPTS; a++) {
        out->n = 0;
        if (ref_seal(first + a, rewritten->b, rewritten->n, r, out) < 0)
            return FC_DAVE_STOP; /* footer over 255 bytes */
        *attempts = a + 1;
        if (!ref_leak(out->b, out->n, r))
            return (long)out->n;
    }
    return FC_DAVE_H26X_DROPPED;
}

static void mode_h26x(const uint8_t *P, const uint8_t *X, size_t n, int be)
{
    int h265 = (P[0] >> 3) & 1;
    bstr ro = {0};
    rlist rr = {0};
    long rw = ref_h26x_frame(h265, X, n, &ro, &rr);
    size_t max = fc_dave_h26x_max(n);
    FUZZ_CHECK(rw < 0 || (size_t)rw <= max, "reference rewrite %ld > fc_dave_h26x_max(%zu)",
               rw, n);
    FUZZ_CHECK(rw == -2 || rw == (long)ro.n, "ref");

    /* the rewrite */
    size_t cap, d = 1 + P[1] % 16;
    switch ((P[0] >> 4) & 3) {
    case 0: cap = max; break;
    case 1: cap = ro.n; break;
    case 2: cap = ro.n > d ? ro.n - d : 0; break;
    default: cap = P[1]; break;
    }
    /* C: STOP where the output or the ranges had run out of room by the time the
     * reference finished or raised */
    long want = ro.n > cap || rr.n > FC_DAVE_MAX_RANGES ? FC_DAVE_STOP
                : rw < 0                                 ? FC_DAVE_H26X_MALFORMED
                                                         : rw;
    uint8_t *out = filled(cap);
    fc_dave_ranges r;
    memset(&r, 0x5A, sizeof r);
    long got = fc_dave_h26x_rewrite(h265, X, n, out, cap, &r);
    FUZZ_CHECK(got == FC_DAVE_STOP || got == FC_DAVE_H26X_MALFORMED ||
                   (got >= 0 && (size_t)got <= max && (size_t)got <= cap),
               "fc_dave_h26x_rewrite = %ld (n %zu cap %zu)", got, n, cap);
    FUZZ_CHECK(got == want, "fc_dave_h26x_rewrite(h265 %d) = %ld, reference %ld "
               "(ref len %zu, ranges %zu, cap %zu); X=%s",
               h265, got, want, ro.n, rr.n, cap, hexs(X, n));
    if (got >= 0) {
        n_rw++;
        check_ranges_fc(&r, (size_t)got, "fc_dave_h26x_rewrite");
        FUZZ_CHECK(eq(out, ro.b, ro.n) && same_ranges(&r, &rr),
                   "fc_dave_h26x_rewrite bytes/ranges differ from the reference; X=%s",
                   hexs(X, n));
        FUZZ_CHECK(all_are(out + got, cap - (size_t)got, FILL), "rewrite wrote past its end");
    } else {
        if (got == FC_DAVE_H26X_MALFORMED)
            n_rw_malformed++;
        else
            n_rw_stop++;
        FUZZ_CHECK(r.n == 0 && wiped_prefix(out, cap),
                   "a failed rewrite left ranges (%zu) or bytes of the frame", r.n);
    }
    free(out);

    /* the leak test on the reference's rewrite itself */
    if (rw >= 0 && rr.n <= FC_DAVE_MAX_RANGES) {
        fc_dave_ranges fr;
        to_fc(&rr, &fr);
        uint8_t *c = dup_exact(ro.b, ro.n);
        FUZZ_CHECK(fc_dave_start_code_leak(c, ro.n, &fr) == ref_leak(c, ro.n, &rr),
                   "fc_dave_start_code_leak differs on a rewritten frame");
        free(c);
    }

    /* seal_h26x */
    uint32_t first = u32le(P + 2);
    bstr ws = {0};
    unsigned wa, ga = 99;
    long wsl = ref_seal_h26x(first, rw, &ro, &rr, &ws, &wa);
    size_t scap = fc_dave_h26x_sealed_max(n);
    uint8_t *so = filled(scap);
    long gs = fc_dave_seal_h26x(fuzz_gcm(be, 16), first, h265, X, n, so, scap, &ga);
    int gen = (first & 0xFFFFFFu) + 9 > 0xFFFFFFu;
    FUZZ_CHECK(!gen || (gs == FC_DAVE_STOP && ga == 0 && all_are(so, scap, FILL)),
               "fc_dave_seal_h26x(first %#x) past the generation = %ld, attempts %u", first,
               gs, ga);
    /* what fc_dave_h26x_rewrite returns with room for the frame */
    long rw_c = rr.n > FC_DAVE_MAX_RANGES ? FC_DAVE_STOP : rw < 0 ? FC_DAVE_H26X_MALFORMED : rw;
    FUZZ_CHECK(gen || ((gs == FC_DAVE_H26X_MALFORMED) == (rw_c == FC_DAVE_H26X_MALFORMED) &&
                       (rw_c != FC_DAVE_STOP || gs == FC_DAVE_STOP)),
               "fc_dave_seal_h26x = %ld, rewrite %ld", gs, rw_c);
    FUZZ_CHECK(gs == wsl && ga == wa,
               "fc_dave_seal_h26x(h265 %d, first %#x) = %ld after %u attempts, reference %ld "
               "after %u; X=%s", h265, first, gs, ga, wsl, wa, hexs(X, n));
    if (gs >= 0) {
        FUZZ_CHECK(ga >= 1 && ga <= FC_DAVE_H26X_ATTEMPTS && (size_t)gs <= scap,
                   "attempts %u, length %ld", ga, gs);
        FUZZ_CHECK(eq(so, ws.b, ws.n), "fc_dave_seal_h26x bytes differ; X=%s",
                   hexs(X, n));
        uint8_t *S = dup_exact(so, (size_t)gs);
        fc_dave_ranges fr;
        to_fc(&rr, &fr);
        FUZZ_CHECK(!fc_dave_start_code_leak(S, (size_t)gs, &fr),
                   "fc_dave_seal_h26x returned a frame with a start code leak");
        FUZZ_CHECK(fc_dave_nonce(S, (size_t)gs) == (long long)(first + ga - 1),
                   "sealed under nonce %lld, not first + attempts - 1",
                   fc_dave_nonce(S, (size_t)gs));
        uint8_t *pt;
        long r1 = open_both(be, S, (size_t)gs, (size_t)gs, &pt);
        FUZZ_CHECK(r1 == (long)ro.n && eq(pt, ro.b, ro.n),
                   "fc_dave_open of fc_dave_seal_h26x's frame = %ld, not the rewrite (%zu)",
                   r1, ro.n);
        free(pt);
        free(S);
        n_h26x_sealed++;
        if (ga > 1)
            n_h26x_retry++;
    } else if (gen) {
        n_h26x_gen_stop++;
    } else if (gs != FC_DAVE_H26X_DROPPED) {
        if (gs == FC_DAVE_STOP)
            n_h26x_other_stop++;
        /* no plaintext: a wiped prefix (failed rewrite), or the rewrite's bytes wiped */
        size_t z = rw_c >= 0 ? ro.n : 0;
        FUZZ_CHECK(all_are(so, z, 0) && (z || wiped_prefix(so, scap)),
                   "fc_dave_seal_h26x = %ld left plaintext in out", gs);
    }
    free(so);
    free(ws.b);
    free(ro.b);
    rl_free(&rr);
}

/* ------------------------------------------------------------------ mode 3 ---- */

static void mode_ranges(const uint8_t *P, const uint8_t *B, size_t blen, int be)
{
    int absolute = (P[0] >> 6) & 1, wide = (P[0] >> 7) & 1, in_place = (P[0] >> 3) & 1;
    size_t fw = wide ? 2 : 1, k = u16le(P + 6) % 160;
    if (k * 2 * fw > blen)
        k = blen / (2 * fw);
    size_t hl = k * 2 * fw, len = blen - hl;
    uint8_t *X = dup_exact(B + hl, len);
    rlist rr = {0};
    uint64_t prev = 0;
    for (size_t j = 0; j < k; j++) {
        const uint8_t *q = B + j * 2 * fw;
        uint64_t a = wide ? u16le(q) : q[0], b = wide ? u16le(q + 2) : q[1];
        uint64_t off = absolute ? a : prev + a;
        rl_push(&rr, off, b);
        prev = off + b;
    }
    fc_dave_ranges fr;
    if (rr.n <= FC_DAVE_MAX_RANGES) {
        to_fc(&rr, &fr);
        int lk = fc_dave_start_code_leak(X, len, &fr);
        FUZZ_CHECK(lk == ref_leak(X, len, &rr), "fc_dave_start_code_leak = %d on %zu ranges; X=%s",
                   lk, rr.n, hexs(X, len));
        n_leak += (unsigned long)lk;
    } else {
        fr.n = rr.n; /* more than the struct holds: must stop without reading them */
    }
    uint32_t nonce = u32le(P + 2);
    bstr want = {0};
    int wok = ref_seal(nonce, X, len, &rr, &want) == 0 && rr.n <= FC_DAVE_MAX_RANGES;
    size_t max = rr.n <= FC_DAVE_MAX_RANGES ? fc_dave_ranges_sealed_max(len, rr.n) : len, cap,
           d = 1 + P[1] % 16;
    switch ((P[0] >> 4) & 3) {
    case 0: cap = max; break;
    case 1: cap = wok ? want.n : max; break;
    case 2: cap = !wok ? max : want.n > d ? want.n - d : 0; break;
    default: cap = P[1]; break;
    }
    FUZZ_CHECK(!wok || want.n <= max, "fc_dave_ranges_sealed_max(%zu, %zu) = %zu < %zu", len,
               rr.n, max, want.n);
    long expect = wok && cap >= want.n ? (long)want.n : FC_DAVE_STOP;
    uint8_t *out = filled(cap);
    long r = fc_dave_seal_ranges(fuzz_gcm(be, 16), nonce, X, len, &fr, out, cap);
    FUZZ_CHECK(r == expect, "fc_dave_seal_ranges(%zu ranges, len %zu, cap %zu) = %ld, reference "
               "%ld (%s)", rr.n, len, cap, r, expect, wok ? "seals" : "raises");
    if (r < 0) {
        n_ranges_stop++;
        FUZZ_CHECK(all_are(out, cap, FILL), "a stopped fc_dave_seal_ranges wrote");
        goto done;
    }
    size_t n = (size_t)r;
    FUZZ_CHECK(eq(out, want.b, n) && all_are(out + n, cap - n, FILL),
               "fc_dave_seal_ranges bytes differ from the reference; X=%s", hexs(X, len));
    {
        uint8_t *o2 = filled(cap);
        long r2 = fc_dave_seal_ranges(fuzz_gcm(other_backend(be), 16), nonce, X, len, &fr, o2,
                                      cap);
        FUZZ_CHECK(r2 == r && eq(o2, out, n), "twin backend's seal_ranges differs");
        free(o2);
    }
    if (in_place) { /* out == in: the frame in a block of cap bytes */
        uint8_t *buf = filled(cap);
        memcpy(buf, X, len);
        long r3 = fc_dave_seal_ranges(fuzz_gcm(be, 16), nonce, buf, len, &fr, buf, cap);
        FUZZ_CHECK(r3 == r && eq(buf, out, n), "sealing in place differs (%ld)", r3);
        free(buf);
    }
    uint8_t *S = dup_exact(out, n), *pt;
    long ro = open_both(be, S, n, len, &pt);
    FUZZ_CHECK(ro == (long)len && eq(pt, X, len),
               "fc_dave_open of fc_dave_seal_ranges' frame = %ld (len %zu)", ro, len);
    free(pt);
    free(S);
    n_ranges_sealed++;
done:
    free(out);
    free(want.b);
    free(X);
    rl_free(&rr);
}

/* ------------------------------------------------------------------ entry ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_gcm(FC_BACKEND_EVP, 16); /* says once whether ipsec-mb is fuzzed */
    atexit(report);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < NP)
        return 0;
    n_runs++;
    const uint8_t *P = data;
    size_t len = size - NP;
    uint8_t *B = dup_exact(data + NP, len);
    int be = (P[0] & 4) ? FC_BACKEND_IMB : FC_BACKEND_EVP;
    switch (P[0] & 3) {
    case 0: mode_open(P, B, len, be); break;
    case 1: mode_seal(P, B, len, be); break;
    case 2: mode_h26x(P, B, len, be); break;
    default: mode_ranges(P, B, len, be); break;
    }
    FUZZ_CHECK(eq(B, data + NP, len), "the input was modified");
    free(B);
    return 0;
}
