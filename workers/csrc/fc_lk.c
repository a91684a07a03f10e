#include "fc_lk.h"

#include <stdlib.h>
#include <string.h>

#include "fc_h26x.h"

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void fc_lk_trailer(uint8_t t[FC_LK_TRAILER], uint32_t ssrc, uint32_t ts, uint32_t word,
                   uint8_t kid)
{
    put32be(t, ssrc);
    put32be(t + 4, ts);
    put32be(t + 8, word);
    t[12] = FC_IV_LEN;
    t[13] = kid;
}

static const uint8_t none_byte[1];

/* Outputs never overlap inputs: the callers' buffers are distinct (checked here). */
static int overlap(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return a < b + bn && b < a + an;
}

/* (clear bytes, nal?) of a frame under ``rule``; -1 = stop */
static long clear_of(const uint8_t *in, size_t len, int rule, int vp8rule, int *nal)
{
    *nal = 0;
    if (rule <= 250)
        return rule;
    if (rule == FC_CLEAR_NAL264 || rule == FC_CLEAR_NAL265) {
        long n = fc_h26x_clear_bytes(in, len, rule == FC_CLEAR_NAL264 ? FC_H264 : FC_H265);
        if (n >= 0) {
            *nal = 1;
            return n;
        }
        return vp8rule;
    }
    return -1;
}

#define SCRATCH 4096

/* A rule the loop handles: a fixed count or a NAL scan (else: no such codec). */
static int rule_ok(int rule)
{
    return rule <= 250 || rule == FC_CLEAR_NAL264 || rule == FC_CLEAR_NAL265;
}

long fc_lk_seal(fc_gcm *g, const uint8_t *in, size_t len, int rule, int vp8rule,
                const uint8_t trailer[FC_LK_TRAILER], uint8_t *out, size_t cap)
{
    if (!rule_ok(rule))
        return FC_STOP; /* an unknown codec is malformed, even empty (the reference) */
    if (len == 0)
        return 0;
    int nal;
    long n = clear_of(in, len, rule, vp8rule, &nal);
    if (n < 0 || (size_t)n > len)
        return FC_STOP;
    size_t body = len - (size_t)n;
    if (overlap(in, len, out, cap))
        return FC_STOP;
    if (!nal) {
        size_t total = len + FC_LK_OVERHEAD;
        if (total > cap)
            return FC_STOP;
        if (n)
            memcpy(out, in, (size_t)n);
        if (fc_gcm_seal(g, trailer, out, (size_t)n, body ? in + n : none_byte, body,
                        out + n, out + n + body) != 0)
            return FC_STOP;
        memcpy(out + len + FC_TAG_LEN, trailer, FC_LK_TRAILER);
        return (long)total;
    }
    /* H.26x: normalised header as AAD and on the wire; ct ‖ tag ‖ trailer escaped */
    size_t grow = fc_h26x_normalize_growth(in, (size_t)n);
    size_t hn = (size_t)n + grow;
    size_t rest = body + FC_LK_OVERHEAD;
    if (hn + rest > cap)
        return FC_STOP;
    uint8_t stack[SCRATCH];
    uint8_t *tmp = rest <= SCRATCH ? stack : malloc(rest);
    if (tmp == NULL)
        return FC_STOP;
    fc_h26x_normalize(in, (size_t)n, out);
    long result = FC_STOP;
    if (fc_gcm_seal(g, trailer, out, hn, body ? in + n : none_byte, body, tmp,
                    tmp + body) == 0) {
        memcpy(tmp + body + FC_TAG_LEN, trailer, FC_LK_TRAILER);
        size_t esc = fc_h26x_escape_growth(tmp, rest);
        if (hn + rest + esc <= cap)
            result = (long)(hn + fc_h26x_escape(tmp, rest, out + hn));
    }
    if (tmp != stack)
        free(tmp);
    return result;
}

static int key_nal(int kind, uint8_t h)
{
    if (kind == FC_KF_H264) {
        int t = h & 0x1F;
        return t == 5 || t == 7;
    }
    int t = (h >> 1) & 0x3F;
    return (t >= 16 && t <= 21) || t == 32 || t == 33;
}

int fc_lk_keyframe(int kind, const uint8_t *in, size_t len)
{
    if (len == 0)
        return 0;
    uint8_t b0 = in[0];
    switch (kind) {
    case FC_KF_VP8:
        return !(b0 & 1);
    case FC_KF_VP9:
        if (b0 >> 6 != 2)
            return 0;
        return !(b0 & ((b0 & 0x30) == 0x30 ? 0x06 : 0x0C));
    case FC_KF_AV1: {
        size_t i = 0;
        if (((b0 >> 3) & 0xF) == 2) {
            if (!(b0 & 0x02))
                return 0;
            i = (b0 & 0x04) ? 2 : 1;
            if (i >= len || in[i] != 0)
                return 0;
            i++;
        }
        return i < len && ((in[i] >> 3) & 0xF) == 1;
    }
    case FC_KF_H264:
    case FC_KF_H265: {
        size_t end = len < 10 ? len : 10;
        int zeros = 0;
        for (size_t j = 0; j + 1 < end; j++) {
            if (in[j] == 0) {
                zeros++;
                continue;
            }
            if (in[j] == 1 && zeros >= 2 && key_nal(kind, in[j + 1]))
                return 1;
            zeros = 0;
        }
        return 0;
    }
    default:
        return 0;
    }
}

int fc_lk_kid(const uint8_t *in, size_t len) { return len ? in[len - 1] : -1; }

long fc_lk_open(fc_gcm *g, const uint8_t *in, size_t len, int rule, int vp8rule,
                uint8_t *out, size_t cap)
{
    if (!rule_ok(rule))
        return FC_STOP;
    if (len == 0)
        return 0;
    int nal;
    long n = clear_of(in, len, rule, vp8rule, &nal);
    if (n < 0 || (size_t)n + FC_LK_OVERHEAD > len || overlap(in, len, out, cap))
        return FC_STOP;
    const uint8_t *body = in + n;
    size_t blen = len - (size_t)n;
    uint8_t stack[SCRATCH];
    uint8_t *tmp = NULL;
    if (nal && fc_h26x_needs_unescape(body, blen)) {
        tmp = blen <= SCRATCH ? stack : malloc(blen);
        if (tmp == NULL)
            return FC_STOP;
        blen = fc_h26x_unescape(body, blen, tmp);
        body = tmp;
    }
    long result = FC_STOP;
    if (blen >= FC_LK_OVERHEAD && body[blen - 2] == FC_IV_LEN) {
        size_t ct = blen - FC_LK_OVERHEAD;
        if ((size_t)n + ct <= cap) {
            const uint8_t *iv = body + blen - FC_LK_TRAILER;
            if (fc_gcm_open(g, iv, in, (size_t)n, ct ? body : none_byte, ct, body + ct,
                            out + n) == 0) {
                if (n)
                    memcpy(out, in, (size_t)n);
                result = (long)((size_t)n + ct);
            }
        }
    }
    if (tmp != NULL && tmp != stack)
        free(tmp);
    return result;
}
