/* SFrame (RFC 9605): header codec and the suites' AEADs; see fc_sframe.h.
 *
 * AES-CTR + HMAC (RFC 9605 §4.5.1), exactly as workers/sframe/aead.py CtrHmacAead:
 *
 *     enc_key, auth_key = key[:Nka], key[Nka:]
 *     ct  = AES-CTR(enc_key, counter block = nonce || 0x00000000, pt)
 *     tag = HMAC(auth_key, u64(len aad) || u64(len ct) || u64(Nt) || nonce || aad || ct)[:Nt]
 *
 * with the tag checked (constant time) before anything is decrypted. The CTR context
 * is keyed once per key (EVP); the HMAC inner and outer hash states are precomputed
 * once per key and copied per frame (SHA-256/512 of libcrypto: the low-level API,
 * whose context copies are plain struct copies; -DFC_SF_EVP_HMAC, or a libcrypto
 * without the deprecated API, uses EVP_MD_CTX copies instead). All of it is wiped
 * when the key is freed. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "fc_sframe.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#if defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(FC_SF_EVP_HMAC)
#define FC_SF_EVP_HMAC 1
#endif

struct suite {
    int id, nka, nh, nk, nt, gcm, sha512;
};

static const struct suite SUITES[] = {
    {1, 16, 32, 48, 10, 0, 0}, {2, 16, 32, 48, 8, 0, 0},  {3, 16, 32, 48, 4, 0, 0},
    {4, 0, 32, 16, 16, 1, 0},  {5, 0, 64, 32, 16, 1, 1},  {6, 32, 64, 96, 10, 0, 1},
    {7, 32, 64, 96, 8, 0, 1},  {8, 32, 64, 96, 4, 0, 1},
};

static const struct suite *suite_of(int id)
{
    for (size_t i = 0; i < sizeof SUITES / sizeof SUITES[0]; i++)
        if (SUITES[i].id == id)
            return &SUITES[i];
    return NULL;
}

int fc_sf_suite_nk(int id)
{
    const struct suite *s = suite_of(id);
    return s ? s->nk : 0;
}

int fc_sf_suite_nt(int id)
{
    const struct suite *s = suite_of(id);
    return s ? s->nt : 0;
}

int fc_sf_suite_gcm(int id)
{
    const struct suite *s = suite_of(id);
    return s ? s->gcm : 0;
}

#ifndef FC_SF_EVP_HMAC
typedef union {
    SHA256_CTX s256;
    SHA512_CTX s512;
} sha_state;
#endif

struct fc_sf_key {
    const struct suite *s;
    uint64_t kid;
    uint8_t salt[FC_SF_NONCE];
    uint8_t cfg;     /* config byte bits of the KID */
    int klen;        /* KID bytes after the config byte (0: KID <= 7) */
    uint8_t kidb[8]; /* those bytes, big-endian */
    fc_gcm *gcm;
    int own_gcm;
    EVP_CIPHER_CTX *ctr;
#ifdef FC_SF_EVP_HMAC
    EVP_MD_CTX *in, *out, *tmp;
#else
    sha_state in, out;
#endif
};

static const uint8_t none[1];
#define NZ(p, n) ((n) ? (const uint8_t *)(p) : none)

static int overlap(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an && bn && a < b + bn && b < a + an;
}

static void put64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* ---------------------------------------------------------------- header */

/* bytes of the minimal big-endian encoding of v (v >= 8) */
static int vlen(uint64_t v)
{
    int n = 1;
    while (n < 8 && (v >> (8 * n)) != 0)
        n++;
    return n;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int encode_ctr(uint8_t cfg, const uint8_t *kidb, int klen, uint64_t ctr,
                      uint8_t out[FC_SF_MAX_HEADER])
{
    memcpy(out + 1, kidb, (size_t)klen);
    if (ctr < 8) {
        out[0] = (uint8_t)(cfg | ctr);
        return 1 + klen;
    }
    int clen = vlen(ctr);
    out[0] = (uint8_t)(cfg | 0x08 | (clen - 1));
    put_be(out + 1 + klen, ctr, clen);
    return 1 + klen + clen;
}

static void kid_prefix(uint64_t kid, uint8_t *cfg, uint8_t kidb[8], int *klen)
{
    if (kid < 8) {
        *cfg = (uint8_t)(kid << 4);
        *klen = 0;
        return;
    }
    *klen = vlen(kid);
    *cfg = (uint8_t)(0x80 | ((*klen - 1) << 4));
    put_be(kidb, kid, *klen);
}

int fc_sf_header_encode(uint64_t kid, uint64_t ctr, uint8_t out[FC_SF_MAX_HEADER])
{
    uint8_t cfg, kidb[8];
    int klen;
    kid_prefix(kid, &cfg, kidb, &klen);
    return encode_ctr(cfg, kidb, klen, ctr, out);
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int fc_sf_header_decode(const uint8_t *p, size_t n, uint64_t *kid, uint64_t *ctr)
{
    if (n == 0)
        return FC_SF_EMPTY;
    uint8_t cfg = p[0];
    int klen = (cfg & 0x80) ? ((cfg >> 4) & 7) + 1 : 0;
    int clen = (cfg & 0x08) ? (cfg & 7) + 1 : 0;
    size_t end = 1 + (size_t)klen + (size_t)clen;
    if (end > n)
        return FC_SF_TRUNCATED;
    if (klen) {
        uint64_t v = get_be(p + 1, klen);
        /* leading zero byte, or a value <= 7 in extended form */
        uint64_t min = klen == 1 ? 8 : (uint64_t)1 << (8 * (klen - 1));
        if (v < min)
            return FC_SF_NONMIN_KID;
        *kid = v;
    } else {
        *kid = (cfg >> 4) & 7;
    }
    if (clen) {
        uint64_t v = get_be(p + 1 + klen, clen);
        uint64_t min = clen == 1 ? 8 : (uint64_t)1 << (8 * (clen - 1));
        if (v < min)
            return FC_SF_NONMIN_CTR;
        *ctr = v;
    } else {
        *ctr = cfg & 7;
    }
    return (int)end;
}

/* ---------------------------------------------------------------- keys */

#ifdef FC_SF_EVP_HMAC
static int hmac_pre(EVP_MD_CTX *c, const EVP_MD *md, const uint8_t *pad, size_t b)
{
    return EVP_DigestInit_ex(c, md, NULL) == 1 && EVP_DigestUpdate(c, pad, b) == 1;
}
#endif

static int hmac_setup(fc_sf_key *k, const uint8_t *auth, size_t nh)
{
    size_t b = k->s->sha512 ? 128 : 64; /* block size; nh < b for every suite */
    uint8_t ipad[128], opad[128];
    memset(ipad, 0x36, b);
    memset(opad, 0x5c, b);
    for (size_t i = 0; i < nh; i++) {
        ipad[i] ^= auth[i];
        opad[i] ^= auth[i];
    }
    int ok;
#ifdef FC_SF_EVP_HMAC
    const EVP_MD *md = k->s->sha512 ? EVP_sha512() : EVP_sha256();
    k->in = EVP_MD_CTX_new();
    k->out = EVP_MD_CTX_new();
    k->tmp = EVP_MD_CTX_new();
    ok = k->in && k->out && k->tmp && hmac_pre(k->in, md, ipad, b) &&
         hmac_pre(k->out, md, opad, b);
#else
    if (k->s->sha512)
        ok = SHA512_Init(&k->in.s512) == 1 && SHA512_Update(&k->in.s512, ipad, b) == 1 &&
             SHA512_Init(&k->out.s512) == 1 && SHA512_Update(&k->out.s512, opad, b) == 1;
    else
        ok = SHA256_Init(&k->in.s256) == 1 && SHA256_Update(&k->in.s256, ipad, b) == 1 &&
             SHA256_Init(&k->out.s256) == 1 && SHA256_Update(&k->out.s256, opad, b) == 1;
#endif
    fc_wipe(ipad, sizeof ipad);
    fc_wipe(opad, sizeof opad);
    return ok;
}

fc_sf_key *fc_sf_key_new(int suite, uint64_t kid, const uint8_t *salt, size_t saltlen,
                         const uint8_t *key, size_t keylen, fc_gcm *gcm, int backend)
{
    const struct suite *s = suite_of(suite);
    if (s == NULL || saltlen != FC_SF_NONCE)
        return NULL;
    if (gcm != NULL ? (!s->gcm || (size_t)fc_gcm_keylen(gcm) != (size_t)s->nk)
                    : (key == NULL || keylen != (size_t)s->nk))
        return NULL;
    fc_sf_key *k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    k->s = s;
    k->kid = kid;
    memcpy(k->salt, salt, FC_SF_NONCE);
    kid_prefix(kid, &k->cfg, k->kidb, &k->klen);
    if (s->gcm) {
        if (gcm != NULL) {
            k->gcm = gcm;
        } else {
            k->gcm = fc_gcm_new(key, keylen, backend);
            k->own_gcm = 1;
            if (k->gcm == NULL)
                goto fail;
        }
        return k;
    }
    k->ctr = EVP_CIPHER_CTX_new();
    if (k->ctr == NULL ||
        EVP_EncryptInit_ex(k->ctr, s->nka == 16 ? EVP_aes_128_ctr() : EVP_aes_256_ctr(), NULL,
                           key, NULL) != 1 ||
        !hmac_setup(k, key + s->nka, (size_t)s->nh))
        goto fail;
    return k;
fail:
    fc_sf_key_free(k);
    return NULL;
}

void fc_sf_key_free(fc_sf_key *k)
{
    if (k == NULL)
        return;
    if (k->own_gcm)
        fc_gcm_free(k->gcm);
    EVP_CIPHER_CTX_free(k->ctr); /* OpenSSL cleanses the key schedule */
#ifdef FC_SF_EVP_HMAC
    EVP_MD_CTX_free(k->in);
    EVP_MD_CTX_free(k->out);
    EVP_MD_CTX_free(k->tmp);
#endif
    fc_wipe(k, sizeof *k);
    free(k);
}

int fc_sf_key_suite(const fc_sf_key *k) { return k->s->id; }

int fc_sf_key_nt(const fc_sf_key *k) { return k->s->nt; }

uint64_t fc_sf_key_kid(const fc_sf_key *k) { return k->kid; }

int fc_sf_key_backend(const fc_sf_key *k) { return k->gcm ? fc_gcm_kind(k->gcm) : FC_BACKEND_EVP; }

size_t fc_sf_sealed_len(const fc_sf_key *k, uint64_t ctr, size_t len)
{
    return 1 + (size_t)k->klen + (ctr < 8 ? 0 : (size_t)vlen(ctr)) + len + (size_t)k->s->nt;
}

/* ---------------------------------------------------------------- AEADs */

/* HMAC(auth_key, u64(n1 + n2) || u64(len) || u64(Nt) || nonce || a1 || a2 || ct)[:Nt] */
static int hmac_tag(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *a1,
                    size_t n1, const uint8_t *a2, size_t n2, const uint8_t *ct, size_t len,
                    uint8_t *tag)
{
    uint8_t lens[24], ih[64], full[64];
    int ok = 1;
    put64be(lens, (uint64_t)(n1 + n2));
    put64be(lens + 8, (uint64_t)len);
    put64be(lens + 16, (uint64_t)k->s->nt);
#ifdef FC_SF_EVP_HMAC
    EVP_MD_CTX *c = k->tmp;
    ok = EVP_MD_CTX_copy_ex(c, k->in) == 1 && EVP_DigestUpdate(c, lens, 24) == 1 &&
         EVP_DigestUpdate(c, nonce, FC_SF_NONCE) == 1 && EVP_DigestUpdate(c, a1, n1) == 1 &&
         EVP_DigestUpdate(c, a2, n2) == 1 && EVP_DigestUpdate(c, ct, len) == 1 &&
         EVP_DigestFinal_ex(c, ih, NULL) == 1 && EVP_MD_CTX_copy_ex(c, k->out) == 1 &&
         EVP_DigestUpdate(c, ih, k->s->sha512 ? 64 : 32) == 1 &&
         EVP_DigestFinal_ex(c, full, NULL) == 1;
#else
    sha_state c;
    if (k->s->sha512) {
        c.s512 = k->in.s512;
        SHA512_Update(&c.s512, lens, 24);
        SHA512_Update(&c.s512, nonce, FC_SF_NONCE);
        SHA512_Update(&c.s512, a1, n1);
        SHA512_Update(&c.s512, a2, n2);
        SHA512_Update(&c.s512, ct, len);
        SHA512_Final(ih, &c.s512);
        c.s512 = k->out.s512;
        SHA512_Update(&c.s512, ih, 64);
        SHA512_Final(full, &c.s512);
    } else {
        c.s256 = k->in.s256;
        SHA256_Update(&c.s256, lens, 24);
        SHA256_Update(&c.s256, nonce, FC_SF_NONCE);
        SHA256_Update(&c.s256, a1, n1);
        SHA256_Update(&c.s256, a2, n2);
        SHA256_Update(&c.s256, ct, len);
        SHA256_Final(ih, &c.s256);
        c.s256 = k->out.s256;
        SHA256_Update(&c.s256, ih, 32);
        SHA256_Final(full, &c.s256);
    }
    fc_wipe(&c, sizeof c);
#endif
    memcpy(tag, full, (size_t)k->s->nt);
    fc_wipe(ih, sizeof ih);
    fc_wipe(full, sizeof full);
    return ok ? 0 : -1;
}

/* AES-CTR with counter block nonce || 0x00000000 */
static int ctr_xor(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *in,
                   size_t len, uint8_t *out)
{
    uint8_t iv[16] = {0};
    int n = 0;
    memcpy(iv, nonce, FC_SF_NONCE);
    if (EVP_EncryptInit_ex(k->ctr, NULL, NULL, NULL, iv) != 1)
        return -1;
    if (len && EVP_EncryptUpdate(k->ctr, out, &n, in, (int)len) != 1)
        return -1;
    return 0;
}

/* GCM with the AAD a1 || a2 (one buffer for fc_gcm: joined when a2 is not empty) */
static long gcm_apply(fc_sf_key *k, int seal, const uint8_t nonce[FC_SF_NONCE],
                      const uint8_t *a1, size_t n1, const uint8_t *a2, size_t n2,
                      const uint8_t *in, size_t len, uint8_t *tag, uint8_t *out)
{
    uint8_t stackbuf[256], *joined = NULL;
    const uint8_t *aad = a1;
    size_t aadlen = n1 + n2;
    if (n2) {
        joined = aadlen <= sizeof stackbuf ? stackbuf : malloc(aadlen);
        if (joined == NULL)
            return FC_SF_STOP;
        memcpy(joined, a1, n1);
        memcpy(joined + n1, a2, n2);
        aad = joined;
    }
    int r = seal ? fc_gcm_seal(k->gcm, nonce, NZ(aad, aadlen), aadlen, NZ(in, len), len, out,
                               tag)
                 : fc_gcm_open(k->gcm, nonce, NZ(aad, aadlen), aadlen, NZ(in, len), len, tag,
                               out);
    if (joined != NULL && joined != stackbuf)
        free(joined);
    if (r == 0)
        return 0;
    return seal ? FC_SF_STOP : FC_SF_NOTAUTH;
}

/* seal in[0:len] into ct[0:len] and tag[0:Nt] */
static long aead_seal(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *a1,
                      size_t n1, const uint8_t *a2, size_t n2, const uint8_t *in, size_t len,
                      uint8_t *ct, uint8_t *tag)
{
    if (len > FC_SF_MAX_LEN || n1 > FC_SF_MAX_LEN || n2 > FC_SF_MAX_LEN - n1)
        return FC_SF_STOP;
    if (k->gcm)
        return gcm_apply(k, 1, nonce, a1, n1, a2, n2, in, len, tag, ct);
    if (ctr_xor(k, nonce, in, len, ct) < 0 ||
        hmac_tag(k, nonce, NZ(a1, n1), n1, NZ(a2, n2), n2, NZ(ct, len), len, tag) < 0)
        return FC_SF_STOP;
    return 0;
}

/* open ct[0:len] with tag[0:Nt] into out[0:len]; the tag is checked first */
static long aead_open(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *a1,
                      size_t n1, const uint8_t *a2, size_t n2, const uint8_t *ct, size_t len,
                      const uint8_t *tag, uint8_t *out)
{
    if (len > FC_SF_MAX_LEN || n1 > FC_SF_MAX_LEN || n2 > FC_SF_MAX_LEN - n1)
        return FC_SF_STOP;
    if (k->gcm)
        return gcm_apply(k, 0, nonce, a1, n1, a2, n2, ct, len, (uint8_t *)tag, out);
    uint8_t want[64];
    if (hmac_tag(k, nonce, NZ(a1, n1), n1, NZ(a2, n2), n2, NZ(ct, len), len, want) < 0)
        return FC_SF_STOP;
    int same = CRYPTO_memcmp(want, tag, (size_t)k->s->nt) == 0;
    fc_wipe(want, sizeof want);
    if (!same)
        return FC_SF_NOTAUTH;
    return ctr_xor(k, nonce, ct, len, out) < 0 ? FC_SF_STOP : 0;
}

static void nonce_of(const fc_sf_key *k, uint64_t ctr, uint8_t nonce[FC_SF_NONCE])
{
    memcpy(nonce, k->salt, FC_SF_NONCE);
    for (int i = 11; i >= 4; i--) {
        nonce[i] ^= (uint8_t)ctr;
        ctr >>= 8;
    }
}

long fc_sf_seal(fc_sf_key *k, uint64_t ctr, const uint8_t *pt, size_t len, const uint8_t *md,
                size_t mdlen, uint8_t *out, size_t cap)
{
    uint8_t hdr[FC_SF_MAX_HEADER], nonce[FC_SF_NONCE];
    if (len > FC_SF_MAX_LEN || mdlen > FC_SF_MAX_LEN)
        return FC_SF_STOP;
    size_t hlen = (size_t)encode_ctr(k->cfg, k->kidb, k->klen, ctr, hdr);
    size_t total = hlen + len + (size_t)k->s->nt;
    if (total > cap || overlap(pt, len, out, total) || overlap(md, mdlen, out, total))
        return FC_SF_STOP;
    nonce_of(k, ctr, nonce);
    long r = aead_seal(k, nonce, hdr, hlen, md, mdlen, pt, len, out + hlen, out + hlen + len);
    if (r < 0)
        return r;
    memcpy(out, hdr, hlen);
    return (long)total;
}

long fc_sf_open(fc_sf_key *k, const uint8_t *frame, size_t len, size_t hlen, uint64_t ctr,
                const uint8_t *md, size_t mdlen, uint8_t *out, size_t cap)
{
    uint8_t nonce[FC_SF_NONCE];
    size_t nt = (size_t)k->s->nt;
    if (hlen > len || len > FC_SF_MAX_LEN || mdlen > FC_SF_MAX_LEN)
        return FC_SF_STOP;
    if (len - hlen < nt)
        return FC_SF_SHORT;
    size_t n = len - hlen - nt;
    if (n > cap || overlap(frame, len, out, n) || overlap(md, mdlen, out, n))
        return FC_SF_STOP;
    nonce_of(k, ctr, nonce);
    long r = aead_open(k, nonce, frame, hlen, md, mdlen, frame + hlen, n, frame + hlen + n, out);
    return r < 0 ? r : (long)n;
}

long fc_sf_aead_seal(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *aad,
                     size_t aadlen, const uint8_t *pt, size_t len, uint8_t *out)
{
    if (overlap(pt, len, out, len + (size_t)k->s->nt))
        return FC_SF_STOP;
    return aead_seal(k, nonce, aad, aadlen, NULL, 0, pt, len, out, out + len);
}

long fc_sf_aead_open(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *aad,
                     size_t aadlen, const uint8_t *ct, size_t len, uint8_t *out)
{
    size_t nt = (size_t)k->s->nt;
    if (len < nt)
        return FC_SF_SHORT;
    if (overlap(ct, len, out, len - nt))
        return FC_SF_STOP;
    return aead_open(k, nonce, aad, aadlen, NULL, 0, ct, len - nt, ct + len - nt, out);
}
