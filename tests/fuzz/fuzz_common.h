/* Shared by the libFuzzer targets in tests/fuzz/: fixed keys, one fc_gcm per
 * (backend, key length), and the reference's frame open (frame.parse + Sealed.open)
 * over the naive port in ref_port.c. Everything here is test code; nothing is linked
 * into framecrypt. */
#ifndef FC_FUZZ_COMMON_H
#define FC_FUZZ_COMMON_H

#include "fc_gcm.h"
#include "fc_h26x.h"
#include "fc_lk.h"
#include "fuzz_util.h"
#include "ref_port.h"

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

/* A clear rule of a codec the reference knows (a fixed count or an H.26x scan); the
 * others (codecs.check_codec: UnsupportedCodec) stop, empty frames included. */
static inline int ref_rule_known(int rule)
{
    return rule <= 250 || rule == FC_CLEAR_NAL264 || rule == FC_CLEAR_NAL265;
}

/* frame.open_frame / parse + Sealed.open (success path), with the native callers'
 * extra condition that the plaintext fits ``cap``; decrypts with ``g``. Returns the
 * length written to out (malloc'd, *out) or FC_STOP. */
static inline long ref_lk_open(fc_gcm *g, const uint8_t *in, size_t len, int rule,
                               int vp8rule, size_t cap, uint8_t **out)
{
    *out = NULL;
    if (!ref_rule_known(rule))
        return FC_STOP; /* UnsupportedCodec, even for an empty frame */
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

#endif
