/* Discord DAVE frames in C: see fc_dave.h. The layout (workers/dave/footer.py):
 *   body (ciphertext with the clear ranges in place) | tag (8) | ULEB128 nonce
 *   | ULEB128 (offset, size) pairs | supplemental size (1, counts the whole footer)
 *   | 0xFA 0xFA
 * AES-128-GCM under the nonce 0^8 || u32le(truncated nonce), AAD = the clear ranges'
 * bytes concatenated, the tag truncated to 8 bytes. Opening checks the 8-byte tag by
 * recomputing the whole tag over the ciphertext (GCM's ciphertext is the plaintext
 * XOR the CTR keystream: sealing the ciphertext under the same nonce yields the
 * plaintext), then comparing in constant time. */
#include "fc_dave.h"

#include <stdlib.h>
#include <string.h>

#define MIN_FOOTER (FC_DAVE_TAG + 1 + 2)

size_t fc_dave_uleb_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        p[n++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    return n;
}

/* The value at in[*pos:end] (at most 10 bytes, 64 bits); -1 when cut or too long. */
static int uleb_get(const uint8_t *in, size_t *pos, size_t end, uint64_t *v)
{
    uint64_t x = 0;
    unsigned shift = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= end)
            return -1;
        uint8_t b = in[(*pos)++];
        if (shift == 63 && (b & 0x7E))
            return -1; /* over 64 bits */
        x |= (uint64_t)(b & 0x7F) << shift;
        shift += 7;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

void fc_dave_gcm_iv(uint8_t iv[FC_IV_LEN], uint32_t nonce)
{
    memset(iv, 0, 8);
    iv[8] = (uint8_t)nonce;
    iv[9] = (uint8_t)(nonce >> 8);
    iv[10] = (uint8_t)(nonce >> 16);
    iv[11] = (uint8_t)(nonce >> 24);
}

size_t fc_dave_sealed_max(size_t len)
{
    return len + FC_DAVE_TAG + 5 + 2 * 10 + 3;
}

long fc_dave_seal(fc_gcm *g, uint32_t nonce, const uint8_t *in, size_t len, size_t clear,
                  uint8_t *out, size_t cap)
{
    if (clear > len || cap < fc_dave_sealed_max(len))
        return FC_DAVE_STOP;
    uint8_t iv[FC_IV_LEN], tag[FC_TAG_LEN];
    fc_dave_gcm_iv(iv, nonce);
    memcpy(out, in, clear);
    if (fc_gcm_seal(g, iv, in, clear, in + clear, len - clear, out + clear, tag) != 0)
        return FC_DAVE_STOP;
    size_t o = len;
    size_t start = o;
    memcpy(out + o, tag, FC_DAVE_TAG);
    o += FC_DAVE_TAG;
    o += fc_dave_uleb_put(out + o, nonce);
    if (clear) {
        o += fc_dave_uleb_put(out + o, 0);
        o += fc_dave_uleb_put(out + o, clear);
    }
    size_t supp = o - start + 3;
    out[o++] = (uint8_t)supp;
    out[o++] = 0xFA;
    out[o++] = 0xFA;
    return (long)o;
}

typedef struct {
    uint64_t nonce;
    size_t body;
    size_t nranges;
    size_t off[FC_DAVE_MAX_RANGES], size[FC_DAVE_MAX_RANGES];
} footer_t;

/* As footer.parse: 0 = parsed (ranges in order, inside the body), -1 = not. */
static int parse(const uint8_t *in, size_t len, footer_t *f)
{
    if (len < MIN_FOOTER || in[len - 1] != 0xFA || in[len - 2] != 0xFA)
        return -1;
    size_t supp = in[len - 3];
    if (supp < MIN_FOOTER || supp > len)
        return -1;
    size_t start = len - supp, end = len - 3, pos = start + FC_DAVE_TAG;
    if (uleb_get(in, &pos, end, &f->nonce) < 0 || f->nonce > 0xFFFFFFFFu)
        return -1;
    size_t prev = 0;
    f->nranges = 0;
    while (pos < end) {
        uint64_t off, size;
        if (uleb_get(in, &pos, end, &off) < 0 || uleb_get(in, &pos, end, &size) < 0)
            return -1;
        if (f->nranges == FC_DAVE_MAX_RANGES || off < prev || off > start ||
            size > start - off)
            return -1;
        f->off[f->nranges] = (size_t)off;
        f->size[f->nranges++] = (size_t)size;
        prev = (size_t)(off + size);
    }
    f->body = start;
    return 0;
}

long long fc_dave_nonce(const uint8_t *in, size_t len)
{
    footer_t f;
    return parse(in, len, &f) < 0 ? -1 : (long long)f.nonce;
}

long fc_dave_open(fc_gcm *g, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    footer_t f;
    if (parse(in, len, &f) < 0 || cap < f.body)
        return FC_DAVE_STOP;
    uint8_t iv[FC_IV_LEN], tag[FC_TAG_LEN], junk[FC_TAG_LEN];
    fc_dave_gcm_iv(iv, (uint32_t)f.nonce);
    size_t nclear = 0;
    for (size_t i = 0; i < f.nranges; i++)
        nclear += f.size[i];
    size_t ncipher = f.body - nclear;
    /* tmp: the ciphertext and the clear bytes gathered (ranges), or room to re-seal */
    size_t need = ncipher + nclear;
    uint8_t small[4096];
    uint8_t *tmp = need <= sizeof small ? small : malloc(need ? need : 1);
    if (tmp == NULL)
        return FC_DAVE_STOP;
    const uint8_t *ct = in, *aad = NULL;
    if (f.nranges) {
        size_t c = 0, a = 0, pos = 0;
        for (size_t i = 0; i < f.nranges; i++) {
            memcpy(tmp + c, in + pos, f.off[i] - pos);
            c += f.off[i] - pos;
            memcpy(tmp + ncipher + a, in + f.off[i], f.size[i]);
            a += f.size[i];
            pos = f.off[i] + f.size[i];
        }
        memcpy(tmp + c, in + pos, f.body - pos);
        ct = tmp;
        aad = tmp + ncipher;
    }
    long ret = FC_DAVE_STOP;
    /* the plaintext (CTR keystream applied), then the whole tag over the ciphertext */
    if (fc_gcm_seal(g, iv, NULL, 0, ct, ncipher, out, junk) != 0 ||
        fc_gcm_seal(g, iv, aad, nclear, out, ncipher, tmp, tag) != 0)
        goto done;
    unsigned diff = 0;
    for (int i = 0; i < FC_DAVE_TAG; i++)
        diff |= (unsigned)(tag[i] ^ in[f.body + i]);
    if (diff)
        goto done;
    if (f.nranges) { /* interleave: plaintext pieces from the back, then clear ranges */
        size_t gathered = ncipher, end = f.body;
        for (size_t i = f.nranges; i-- > 0;) {
            size_t piece = end - (f.off[i] + f.size[i]);
            gathered -= piece;
            memmove(out + f.off[i] + f.size[i], out + gathered, piece);
            end = f.off[i];
        }
        size_t a = 0;
        for (size_t i = 0; i < f.nranges; i++) {
            memcpy(out + f.off[i], aad + a, f.size[i]);
            a += f.size[i];
        }
    }
    ret = (long)f.body;
done:
    fc_wipe(tmp, need);
    if (tmp != small)
        free(tmp);
    if (ret < 0)
        fc_wipe(out, cap);
    return ret;
}
