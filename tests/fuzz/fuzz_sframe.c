/* libFuzzer target: the SFrame (RFC 9605) C core, workers/csrc/fc_sframe.c.
 *
 * Input: 24 parameter bytes P, then the body B (md = B[:mdlen], X = B[mdlen:]).
 *   P[0]  bits 0-2  suite 1..8 (the "selected" suite)
 *         bit  3    GCM suites: primary backend ipsec-mb (else EVP); the other is the twin
 *         bit  4    GCM suites: key from a borrowed fc_gcm (else fc_sf_key_new's own)
 *         bits 5-6  open capacity of the selected suite: 0 the callers' (len - hlen - Nt),
 *                   1 that minus 1 + P[22] % 32, 2 P[22], 3 the callers' + P[22]
 *         bit  7    also the overlap refusals (output overlapping input / metadata)
 *   P[1]          key seed: sframe_key / sframe_salt = sf_key() / sf_salt() below
 *   P[2..9]       KID bytes, P[10] its form: n = P[10] % 9 big-endian bytes of P[2..],
 *                 n = 0: KID = (P[10] >> 4) & 7
 *   P[11..18]     CTR bytes, P[19] its form (as the KID)
 *   P[20..21]     mdlen = big-endian 16 bits % (len B + 1)
 *   P[22]         capacity adjustment; header length for frames whose header does not
 *                 decode (P[22] % (len X + 1): SfKey.open takes any length in [0, len])
 *   P[23] bits 0-1  seal capacity: 0 exact (fc_sf_sealed_len), 1 that minus 1 + P[22] % 32,
 *                   2 P[22], 3 exact + P[22]
 *         bits 2-7  which bit of the sealed frame to flip (with P[22])
 * Every buffer handed to the code under test is an exact-size heap block.
 *
 * (a) Header: fc_sf_header_decode on the whole input and on X (exact-size copies) equals a
 *     naive port of header.py decode_header (result code, KID, CTR, length); a decoded
 *     header is in [1, 17] and within the input, and fc_sf_header_encode(kid, ctr) gives
 *     back exactly those bytes; every shorter prefix is FC_SF_TRUNCATED (FC_SF_EMPTY for
 *     0). The encoder on the parameter KID/CTR gives 1 + vlen(kid) + vlen(ctr) bytes, the
 *     reference's bytes, and decodes back.
 * (b) Open: X as a frame under every suite 1..8 (keys from P[1]; KID and CTR from X's
 *     header when it decodes, as the callers look the key up by KID; else the parameter
 *     CTR and header length P[22] % (len + 1)), both backends and both key paths for 4/5:
 *     with the callers' capacity the result is FC_SF_SHORT (body < Nt), FC_SF_NOTAUTH or
 *     the plaintext length, equal to an independent OpenSSL implementation (EVP GCM, EVP
 *     CTR + one-shot HMAC) in result and bytes; smaller capacities stop and leave out
 *     untouched, larger ones give the same; after NOTAUTH out holds no plaintext
 *     (untouched, or zeroed by fc_gcm); an opened frame whose header decoded re-seals to
 *     X byte for byte; fc_sf_aead_open agrees; the input and md are never modified.
 * (c) Seal: X with the parameter KID/CTR and md under the selected suite: the length is
 *     fc_sf_sealed_len = 1 + vlen(KID) + vlen(CTR) + len + Nt; the capacity modes stop
 *     below it (out untouched) and write exactly it at or above; the bytes equal the
 *     OpenSSL reference; GCM: the twin backend (and the other key path) seals identical
 *     bytes; the frame's header decodes to (KID, CTR); opening it with the callers'
 *     capacity, with both backends, returns X; one flipped bit makes it NOTAUTH (for a
 *     4-byte tag a flip outside the tag may collide with probability 2^-32: counted, not
 *     failed); fc_sf_aead_seal gives the same ciphertext and tag.
 * Plus (P[0] bit 7) seal / open into buffers overlapping their input or metadata stop
 * and write nothing. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fc_gcm.h"
#include "fc_sframe.h"
#include "fuzz_util.h"

#define NP 24

static unsigned long n_runs, n_hdr_ok, n_opened, n_sealed, n_stop_small, n_flip_collide;

static void report(void)
{
    fprintf(stderr,
            "fuzz_sframe stats: runs %lu, X headers decoded %lu, arbitrary frames opened %lu, "
            "sealed+reopened %lu, small-capacity stops %lu, 4-byte-tag flip collisions %lu\n",
            n_runs, n_hdr_ok, n_opened, n_sealed, n_stop_small, n_flip_collide);
}

/* ------------------------------------------------------------ suites, keys ---- */

struct rs {
    int id, nka, nh, nk, nt, gcm, sha512;
};
/* RFC 9605 §4.5 / suites.py, written out again here (not taken from fc_sframe.c) */
static const struct rs RS[9] = {
    {0, 0, 0, 0, 0, 0, 0},     {1, 16, 32, 48, 10, 0, 0}, {2, 16, 32, 48, 8, 0, 0},
    {3, 16, 32, 48, 4, 0, 0},  {4, 16, 0, 16, 16, 1, 0},  {5, 32, 0, 32, 16, 1, 1},
    {6, 32, 64, 96, 10, 0, 1}, {7, 32, 64, 96, 8, 0, 1},  {8, 32, 64, 96, 4, 0, 1},
};

/* make_corpus.py's sf_key / sf_salt (keep in sync) */
static void sf_key(uint8_t seed, size_t nk, uint8_t *k)
{
    for (size_t i = 0; i < nk; i++)
        k[i] = (uint8_t)(seed * 29 + 0x40 + i * 7 + nk);
}

static void sf_salt(uint8_t seed, uint8_t s[FC_SF_NONCE])
{
    for (size_t i = 0; i < FC_SF_NONCE; i++)
        s[i] = (uint8_t)(seed * 13 + 0xA0 + i * 11);
}

static int have_imb;

static int other_be(int b) { return b == FC_BACKEND_IMB ? FC_BACKEND_EVP : FC_BACKEND_IMB; }

static int real_be(int b) { return (b == FC_BACKEND_IMB && !have_imb) ? FC_BACKEND_EVP : b; }

/* a borrowed fc_gcm per (backend, GCM suite, seed), kept for the process */
static fc_gcm *borrowed(int backend, int suite, uint8_t seed)
{
    static fc_gcm *cache[3][2][256];
    backend = real_be(backend);
    fc_gcm **c = &cache[backend][suite - 4][seed];
    if (*c == NULL) {
        uint8_t k[32];
        sf_key(seed, (size_t)RS[suite].nk, k);
        *c = fc_gcm_new(k, (size_t)RS[suite].nk, backend);
        if (*c == NULL || fc_gcm_kind(*c) != backend) {
            fprintf(stderr, "fuzz_sframe: fc_gcm_new(backend %d) failed\n", backend);
            abort();
        }
    }
    return *c;
}

static fc_sf_key *mkkey(int suite, uint64_t kid, uint8_t seed, int backend, int borrow)
{
    uint8_t k[96], salt[FC_SF_NONCE];
    size_t nk = (size_t)RS[suite].nk;
    sf_key(seed, nk, k);
    sf_salt(seed, salt);
    backend = real_be(backend);
    /* salt and key in exact-size heap blocks */
    uint8_t *hs = dup_exact(salt, FC_SF_NONCE), *hk = dup_exact(k, nk);
    fc_sf_key *key = (RS[suite].gcm && borrow)
                         ? fc_sf_key_new(suite, kid, hs, FC_SF_NONCE, NULL, 0,
                                         borrowed(backend, suite, seed), 0)
                         : fc_sf_key_new(suite, kid, hs, FC_SF_NONCE, hk, nk, NULL,
                                         RS[suite].gcm ? backend : 0);
    free(hs);
    free(hk);
    FUZZ_CHECK(key != NULL, "fc_sf_key_new(suite %d, backend %d, borrow %d) failed", suite,
               backend, borrow);
    FUZZ_CHECK(fc_sf_key_suite(key) == suite && fc_sf_key_kid(key) == kid &&
                   fc_sf_key_nt(key) == RS[suite].nt,
               "key accessors");
    FUZZ_CHECK(fc_sf_key_backend(key) == (RS[suite].gcm ? backend : FC_BACKEND_EVP),
               "fc_sf_key_backend %d, want %d", fc_sf_key_backend(key), backend);
    return key;
}

/* ------------------------------------------------------- reference header ---- */

static int ref_vlen(uint64_t v)
{
    if (v < 8)
        return 0;
    int n = 0;
    while (v) {
        n++;
        v >>= 8;
    }
    return n;
}

/* header.py decode_header, naively */
static int ref_decode(const uint8_t *p, size_t n, uint64_t *kid, uint64_t *ctr)
{
    if (n == 0)
        return FC_SF_EMPTY;
    int x = p[0] >> 7, k = (p[0] >> 4) & 7, y = (p[0] >> 3) & 1, c = p[0] & 7;
    size_t klen = x ? (size_t)k + 1 : 0, clen = y ? (size_t)c + 1 : 0;
    if (1 + klen + clen > n)
        return FC_SF_TRUNCATED;
    uint64_t kv = (uint64_t)k, cv = (uint64_t)c;
    if (x) {
        kv = 0;
        for (size_t i = 0; i < klen; i++)
            kv = kv * 256 + p[1 + i];
        if ((klen > 1 && p[1] == 0) || kv < 8)
            return FC_SF_NONMIN_KID;
    }
    if (y) {
        cv = 0;
        for (size_t i = 0; i < clen; i++)
            cv = cv * 256 + p[1 + klen + i];
        if ((clen > 1 && p[1 + klen] == 0) || cv < 8)
            return FC_SF_NONMIN_CTR;
    }
    *kid = kv;
    *ctr = cv;
    return (int)(1 + klen + clen);
}

/* header.py encode_header, naively */
static size_t ref_encode(uint64_t kid, uint64_t ctr, uint8_t out[FC_SF_MAX_HEADER])
{
    int kl = ref_vlen(kid), cl = ref_vlen(ctr);
    out[0] = (uint8_t)((kl ? 0x80 | ((kl - 1) << 4) : (int)kid << 4) |
                       (cl ? 0x08 | (cl - 1) : (int)ctr));
    for (int i = 0; i < kl; i++)
        out[1 + i] = (uint8_t)(kid >> (8 * (kl - 1 - i)));
    for (int i = 0; i < cl; i++)
        out[1 + kl + i] = (uint8_t)(ctr >> (8 * (cl - 1 - i)));
    return (size_t)(1 + kl + cl);
}

static void check_header(const uint8_t *d, size_t n)
{
    uint8_t *p = dup_exact(d, n);
    uint64_t kid = 0xdead, ctr = 0xbeef, rk = 0, rc = 0;
    int h = fc_sf_header_decode(p, n, &kid, &ctr);
    int w = ref_decode(p, n, &rk, &rc);
    FUZZ_CHECK(h == w, "fc_sf_header_decode = %d, reference %d; H=%s", h, w, hexs(p, n));
    if (h >= 0) {
        FUZZ_CHECK(h >= 1 && h <= FC_SF_MAX_HEADER && (size_t)h <= n, "header length %d", h);
        FUZZ_CHECK(kid == rk && ctr == rc, "decoded (%llu, %llu), reference (%llu, %llu)",
                   (unsigned long long)kid, (unsigned long long)ctr, (unsigned long long)rk,
                   (unsigned long long)rc);
        uint8_t e[FC_SF_MAX_HEADER];
        int m = fc_sf_header_encode(kid, ctr, e);
        FUZZ_CHECK(m == h && memcmp(e, p, (size_t)h) == 0,
                   "re-encode %d bytes differs from the decoded %d; H=%s", m, h, hexs(p, n));
        for (int i = 0; i < h; i++) {
            uint64_t a, b;
            int t = fc_sf_header_decode(p, (size_t)i, &a, &b);
            FUZZ_CHECK(t == (i ? FC_SF_TRUNCATED : FC_SF_EMPTY), "prefix %d decodes to %d", i,
                       t);
        }
    }
    FUZZ_CHECK(memcmp(p, d, n) == 0, "decode modified its input");
    free(p);
}

static void check_encode(uint64_t kid, uint64_t ctr)
{
    uint8_t e[FC_SF_MAX_HEADER], r[FC_SF_MAX_HEADER];
    int m = fc_sf_header_encode(kid, ctr, e);
    size_t w = ref_encode(kid, ctr, r);
    FUZZ_CHECK(m >= 1 && (size_t)m == w && memcmp(e, r, w) == 0, "encode(%llu, %llu)",
               (unsigned long long)kid, (unsigned long long)ctr);
    uint8_t *p = dup_exact(e, (size_t)m);
    uint64_t k2, c2;
    FUZZ_CHECK(fc_sf_header_decode(p, (size_t)m, &k2, &c2) == m && k2 == kid && c2 == ctr,
               "encode/decode round trip");
    free(p);
}

/* ------------------------------------------------------- reference AEADs ---- */

static void ref_nonce(uint8_t seed, uint64_t ctr, uint8_t n[FC_SF_NONCE])
{
    sf_salt(seed, n);
    for (int i = 0; i < 8; i++)
        n[11 - i] ^= (uint8_t)(ctr >> (8 * i));
}

/* header || md as one AAD (malloc'd, at least 1 byte) */
static uint8_t *join(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    uint8_t *j = xmalloc(an + bn + 1);
    if (an)
        memcpy(j, a, an);
    if (bn)
        memcpy(j + an, b, bn);
    return j;
}

/* the whole AEAD by OpenSSL's one-shot APIs: ct into ct[0:len], tag into tag[0:nt] */
static int ref_ctr(const struct rs *s, const uint8_t *key, const uint8_t nonce[12],
                   const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t iv[16] = {0};
    int n = 0, ok;
    memcpy(iv, nonce, 12);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    ok = c && EVP_EncryptInit_ex(c, s->nka == 16 ? EVP_aes_128_ctr() : EVP_aes_256_ctr(), NULL,
                                 key, iv) == 1 &&
         (len == 0 || EVP_EncryptUpdate(c, out, &n, in, (int)len) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok;
}

static void ref_hmac(const struct rs *s, const uint8_t *key, const uint8_t nonce[12],
                     const uint8_t *aad, size_t aadlen, const uint8_t *ct, size_t len,
                     uint8_t *tag)
{
    size_t ml = 24 + 12 + aadlen + len;
    uint8_t *m = xmalloc(ml), full[64];
    uint64_t v[3] = {aadlen, len, (uint64_t)s->nt};
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 8; i++)
            m[8 * j + i] = (uint8_t)(v[j] >> (8 * (7 - i)));
    memcpy(m + 24, nonce, 12);
    if (aadlen)
        memcpy(m + 36, aad, aadlen);
    if (len)
        memcpy(m + 36 + aadlen, ct, len);
    unsigned fl = 0;
    FUZZ_CHECK(HMAC(s->sha512 ? EVP_sha512() : EVP_sha256(), key + s->nka, s->nh, m, ml, full,
                    &fl) != NULL,
               "HMAC");
    memcpy(tag, full, (size_t)s->nt);
    free(m);
}

static void ref_seal(int suite, uint8_t seed, const uint8_t nonce[12], const uint8_t *aad,
                     size_t aadlen, const uint8_t *pt, size_t len, uint8_t *ct, uint8_t *tag)
{
    const struct rs *s = &RS[suite];
    uint8_t key[96];
    sf_key(seed, (size_t)s->nk, key);
    if (s->gcm) {
        ref_evp_gcm_seal(s->nk == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), key, nonce, aad,
                         aadlen, pt, len, ct, tag);
    } else {
        FUZZ_CHECK(ref_ctr(s, key, nonce, pt, len, ct), "reference CTR");
        ref_hmac(s, key, nonce, aad, aadlen, ct, len, tag);
    }
}

/* FC_SF_NOTAUTH or the plaintext length (into pt) */
static long ref_open(int suite, uint8_t seed, const uint8_t nonce[12], const uint8_t *aad,
                     size_t aadlen, const uint8_t *ct, size_t len, const uint8_t *tag,
                     uint8_t *pt)
{
    const struct rs *s = &RS[suite];
    uint8_t key[96];
    sf_key(seed, (size_t)s->nk, key);
    if (s->gcm) {
        int n = 0;
        uint8_t t[16], fin[16];
        memcpy(t, tag, 16);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int ok = c &&
                 EVP_DecryptInit_ex(c, s->nk == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(),
                                    NULL, key, nonce) == 1 &&
                 (aadlen == 0 || EVP_DecryptUpdate(c, NULL, &n, aad, (int)aadlen) == 1) &&
                 (len == 0 || EVP_DecryptUpdate(c, pt, &n, ct, (int)len) == 1) &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, t) == 1 &&
                 EVP_DecryptFinal_ex(c, fin, &n) == 1;
        EVP_CIPHER_CTX_free(c);
        return ok ? (long)len : FC_SF_NOTAUTH;
    }
    uint8_t want[64];
    ref_hmac(s, key, nonce, aad, aadlen, ct, len, want);
    if (memcmp(want, tag, (size_t)s->nt) != 0)
        return FC_SF_NOTAUTH;
    FUZZ_CHECK(ref_ctr(s, key, nonce, ct, len, pt), "reference CTR");
    return (long)len;
}

/* ------------------------------------------------------------------ input ---- */

static uint64_t field(const uint8_t *b, uint8_t form)
{
    unsigned n = form % 9;
    if (n == 0)
        return (uint64_t)((form >> 4) & 7);
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static size_t cap_of(unsigned mode, size_t exact, uint8_t adj)
{
    switch (mode & 3) {
    case 0: return exact;
    case 1: return exact > 1u + adj % 32 ? exact - 1 - adj % 32 : 0;
    case 2: return adj;
    default: return exact + adj;
    }
}

#define FILL 0xA5

/* ----------------------------------------------------------------- (b) open ---- */

/* Open F[0:len] (header hlen, counter ctr) with key k into a block of exactly cap bytes;
 * checks the result against want (the reference's) and returns it; *outp keeps the
 * output (malloc'd) */
static long open_cap(fc_sf_key *k, const uint8_t *F, const uint8_t *Fcopy, size_t len,
                     size_t hlen, uint64_t ctr, const uint8_t *md, size_t mdlen, size_t cap,
                     long want, const uint8_t *wpt, uint8_t **outp)
{
    uint8_t *out = xmalloc(cap);
    if (cap)
        memset(out, FILL, cap);
    long r = fc_sf_open(k, F, len, hlen, ctr, md, mdlen, out, cap);
    FUZZ_CHECK(memcmp(F, Fcopy, len) == 0, "fc_sf_open modified the frame");
    size_t nt = (size_t)RS[fc_sf_key_suite(k)].nt;
    long expect;
    if (len - hlen < nt)
        expect = FC_SF_SHORT;
    else if (len - hlen - nt > cap)
        expect = FC_SF_STOP;
    else
        expect = want;
    FUZZ_CHECK(r == expect,
               "fc_sf_open(suite %d, backend %d, len %zu, hlen %zu, cap %zu) = %ld, want %ld; "
               "F=%s",
               fc_sf_key_suite(k), fc_sf_key_backend(k), len, hlen, cap, r, expect,
               hexs(F, len));
    if (r >= 0) {
        FUZZ_CHECK((size_t)r <= cap && (r == 0 || memcmp(out, wpt, (size_t)r) == 0),
                   "fc_sf_open plaintext differs from the reference");
    } else {
        /* no plaintext left: untouched, or (fc_gcm) zeroed */
        /* zero: out[0:n] zeroed (fc_gcm_open wipes what it decrypted), the rest untouched */
        size_t n = len - hlen >= nt ? len - hlen - nt : 0;
        int untouched = 1, zero = 1;
        for (size_t i = 0; i < cap; i++) {
            untouched &= out[i] == FILL;
            zero &= out[i] == (i < n ? 0 : FILL);
        }
        if (r == FC_SF_NOTAUTH)
            FUZZ_CHECK(untouched || (RS[fc_sf_key_suite(k)].gcm && zero),
                       "NOTAUTH left bytes in out (suite %d)", fc_sf_key_suite(k));
        else
            FUZZ_CHECK(untouched, "fc_sf_open returned %ld but wrote into out", r);
    }
    if (outp)
        *outp = out;
    else
        free(out);
    return r;
}

static void open_all(const uint8_t *P, const uint8_t *X, size_t len, const uint8_t *md,
                     size_t mdlen, uint64_t pkid, uint64_t pctr)
{
    uint8_t *F = dup_exact(X, len);
    uint64_t kid, ctr;
    int h = fc_sf_header_decode(F, len, &kid, &ctr);
    size_t hlen;
    if (h >= 0) {
        hlen = (size_t)h;
        n_hdr_ok++;
    } else {
        kid = pkid;
        ctr = pctr;
        hlen = P[22] % (len + 1);
    }
    uint8_t seed = P[1], nonce[12];
    ref_nonce(seed, ctr, nonce);
    uint8_t *aad = join(F, hlen, md, mdlen);
    int sel = 1 + (P[0] & 7);
    int be = (P[0] & 8) ? FC_BACKEND_IMB : FC_BACKEND_EVP;

    for (int suite = 1; suite <= 8; suite++) {
        const struct rs *s = &RS[suite];
        size_t nt = (size_t)s->nt;
        long want = FC_SF_SHORT;
        size_t n = 0;
        uint8_t *wpt = NULL;
        if (len - hlen >= nt) {
            n = len - hlen - nt;
            wpt = xmalloc(n + 1);
            want = ref_open(suite, seed, nonce, aad, hlen + mdlen, F + hlen, n, F + hlen + n,
                            wpt);
        }
        int variants = s->gcm ? 4 : 1; /* GCM: (EVP, IMB) x (own, borrowed) */
        long first = 0;
        uint8_t *firstpt = NULL;
        for (int v = 0; v < variants; v++) {
            int vb = s->gcm ? ((v & 1) ? other_be(be) : be) : 0;
            int borrow = s->gcm ? ((v >> 1) ^ ((P[0] >> 4) & 1)) : 0;
            fc_sf_key *k = mkkey(suite, kid, seed, vb ? vb : FC_BACKEND_EVP, borrow);
            uint8_t *out = NULL;
            long r = open_cap(k, F, X, len, hlen, ctr, md, mdlen, n, want, wpt, &out);
            if (v == 0) {
                first = r;
                firstpt = out;
                out = NULL;
            } else {
                FUZZ_CHECK(r == first && (r <= 0 || memcmp(out, firstpt, (size_t)r) == 0),
                           "GCM variants disagree: %ld vs %ld (suite %d)", r, first, suite);
            }
            free(out);
            if (v == 0 && suite == sel) {
                /* the selected suite: the fuzzer's capacity, and smaller ones */
                size_t cap = cap_of((P[0] >> 5) & 3, n, P[22]);
                open_cap(k, F, X, len, hlen, ctr, md, mdlen, cap, want, wpt, NULL);
                if (n > 0) {
                    open_cap(k, F, X, len, hlen, ctr, md, mdlen, n - 1, want, wpt, NULL);
                    open_cap(k, F, X, len, hlen, ctr, md, mdlen, 0, want, wpt, NULL);
                }
                /* the bare AEAD: same answer */
                if (len - hlen >= nt) {
                    uint8_t *o2 = xmalloc(n);
                    uint8_t *hn = dup_exact(nonce, 12), *ha = dup_exact(aad, hlen + mdlen);
                    long ra = fc_sf_aead_open(k, hn, ha, hlen + mdlen, F + hlen, len - hlen, o2);
                    FUZZ_CHECK(ra == (want >= 0 ? 0 : want) &&
                                   (ra != 0 || n == 0 || memcmp(o2, wpt, n) == 0),
                               "fc_sf_aead_open = %ld, reference %ld", ra, want);
                    free(o2);
                    free(hn);
                    free(ha);
                }
                /* an output overlapping the frame or the metadata stops, writes nothing */
                if ((P[0] & 0x80) && n > 0) {
                    uint8_t *G = dup_exact(F, len);
                    size_t off = P[22] % len;
                    long ro = fc_sf_open(k, G, len, hlen, ctr, md, mdlen, G + off, len - off);
                    FUZZ_CHECK(ro == FC_SF_STOP && memcmp(G, F, len) == 0,
                               "open into its own frame: %ld", ro);
                    if (mdlen) {
                        uint8_t *M = dup_exact(md, mdlen);
                        size_t mo = P[22] % mdlen;
                        ro = fc_sf_open(k, F, len, hlen, ctr, M, mdlen, M + mo, mdlen - mo);
                        FUZZ_CHECK(ro == FC_SF_STOP && memcmp(M, md, mdlen) == 0,
                                   "open into its metadata: %ld", ro);
                        free(M);
                    }
                    free(G);
                }
            }
            /* an opened frame whose header decoded re-seals to itself */
            if (v == 0 && r >= 0 && h >= 0) {
                n_opened++;
                uint8_t *o = xmalloc(len);
                long rs = fc_sf_seal(k, ctr, firstpt, (size_t)r, md, mdlen, o, len);
                FUZZ_CHECK(rs == (long)len && memcmp(o, F, len) == 0,
                           "re-seal of an opened frame differs (suite %d)", suite);
                free(o);
            }
            fc_sf_key_free(k);
        }
        free(firstpt);
        free(wpt);
    }
    FUZZ_CHECK(memcmp(F, X, len) == 0, "frame modified");
    free(aad);
    free(F);
}

/* ----------------------------------------------------------------- (c) seal ---- */

static void seal_one(const uint8_t *P, const uint8_t *X, size_t len, const uint8_t *md,
                     size_t mdlen, uint64_t kid, uint64_t ctr)
{
    int suite = 1 + (P[0] & 7);
    const struct rs *s = &RS[suite];
    int be = (P[0] & 8) ? FC_BACKEND_IMB : FC_BACKEND_EVP;
    int borrow = (P[0] >> 4) & 1;
    uint8_t seed = P[1];
    fc_sf_key *k = mkkey(suite, kid, seed, be, borrow);
    uint8_t *pt = dup_exact(X, len);
    size_t nt = (size_t)s->nt;
    size_t hl = 1 + (size_t)ref_vlen(kid) + (size_t)ref_vlen(ctr);
    size_t total = hl + len + nt;
    FUZZ_CHECK(fc_sf_sealed_len(k, ctr, len) == total, "fc_sf_sealed_len %zu, want %zu",
               fc_sf_sealed_len(k, ctr, len), total);

    /* the reference frame */
    uint8_t *want = xmalloc(total), nonce[12];
    ref_encode(kid, ctr, want);
    ref_nonce(seed, ctr, nonce);
    uint8_t *aad = join(want, hl, md, mdlen);
    ref_seal(suite, seed, nonce, aad, hl + mdlen, X, len, want + hl, want + hl + len);

    /* the fuzzer's capacity */
    size_t cap = cap_of(P[23] & 3, total, P[22]);
    uint8_t *out = xmalloc(cap);
    if (cap)
        memset(out, FILL, cap);
    long r = fc_sf_seal(k, ctr, pt, len, md, mdlen, out, cap);
    if (cap >= total) {
        FUZZ_CHECK(r == (long)total && memcmp(out, want, total) == 0,
                   "fc_sf_seal(suite %d, cap %zu) = %ld, want %zu / bytes differ", suite, cap, r,
                   total);
    } else {
        n_stop_small++;
        int untouched = 1;
        for (size_t i = 0; i < cap; i++)
            untouched &= out[i] == FILL;
        FUZZ_CHECK(r == FC_SF_STOP && untouched, "seal into %zu < %zu bytes: %ld", cap, total,
                   r);
    }
    free(out);

    /* exactly the sealed length (the callers' allocation) */
    uint8_t *S = xmalloc(total);
    r = fc_sf_seal(k, ctr, pt, len, md, mdlen, S, total);
    FUZZ_CHECK(r == (long)total && memcmp(S, want, total) == 0,
               "fc_sf_seal(suite %d, kid %llu, ctr %llu, len %zu, md %zu) differs from the "
               "reference",
               suite, (unsigned long long)kid, (unsigned long long)ctr, len, mdlen);
    FUZZ_CHECK(memcmp(pt, X, len) == 0, "fc_sf_seal modified its input");
    /* one byte short */
    out = xmalloc(total - 1);
    FUZZ_CHECK(fc_sf_seal(k, ctr, pt, len, md, mdlen, out, total - 1) == FC_SF_STOP,
               "seal one byte short");
    free(out);

    /* the other backend and key path seal the same bytes */
    if (s->gcm) {
        for (int v = 1; v < 4; v++) {
            fc_sf_key *k2 = mkkey(suite, kid, seed, (v & 1) ? other_be(be) : be,
                                  borrow ^ (v >> 1));
            uint8_t *S2 = xmalloc(total);
            long r2 = fc_sf_seal(k2, ctr, pt, len, md, mdlen, S2, total);
            FUZZ_CHECK(r2 == (long)total && memcmp(S2, S, total) == 0,
                       "GCM variant %d seals different bytes", v);
            free(S2);
            uint8_t *o = xmalloc(len);
            long ro = fc_sf_open(k2, S, total, hl, ctr, md, mdlen, o, len);
            FUZZ_CHECK(ro == (long)len && memcmp(o, X, len) == 0,
                       "GCM variant %d does not open the frame", v);
            free(o);
            fc_sf_key_free(k2);
        }
    }

    /* the bare AEAD */
    {
        uint8_t *o = xmalloc(len + nt);
        uint8_t *hn = dup_exact(nonce, 12), *ha = dup_exact(aad, hl + mdlen);
        long ra = fc_sf_aead_seal(k, hn, ha, hl + mdlen, pt, len, o);
        FUZZ_CHECK(ra == 0 && memcmp(o, want + hl, len + nt) == 0, "fc_sf_aead_seal differs");
        free(o);
        free(hn);
        free(ha);
    }

    /* the header, then the round trip with the callers' capacity */
    uint64_t k2, c2;
    int h = fc_sf_header_decode(S, total, &k2, &c2);
    FUZZ_CHECK(h == (int)hl && k2 == kid && c2 == ctr, "sealed header decodes to %d", h);
    uint8_t *o = xmalloc(len);
    long ro = fc_sf_open(k, S, total, hl, ctr, md, mdlen, o, len);
    FUZZ_CHECK(ro == (long)len && memcmp(o, X, len) == 0, "round trip (suite %d): %ld", suite,
               ro);
    free(o);
    n_sealed++;

    /* one flipped bit: not authentic */
    {
        size_t bit = (((size_t)P[23] >> 2) * 256 + P[22]) % (total * 8);
        uint8_t *T = dup_exact(S, total);
        T[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        o = xmalloc(len);
        ro = fc_sf_open(k, T, total, hl, ctr, md, mdlen, o, len);
        if (ro != FC_SF_NOTAUTH && nt == 4 && bit / 8 < total - nt && ro == (long)len)
            n_flip_collide++;
        else
            FUZZ_CHECK(ro == FC_SF_NOTAUTH, "bit %zu flipped (suite %d): %ld", bit, suite, ro);
        free(o);
        free(T);
    }

    /* an output overlapping the plaintext or the metadata stops, writes nothing */
    if ((P[0] & 0x80) && len > 0) {
        uint8_t *B = xmalloc(len + total);
        memcpy(B, X, len);
        memset(B + len, FILL, total);
        uint8_t *B0 = dup_exact(B, len + total);
        size_t off = P[22] % len;
        long rr = fc_sf_seal(k, ctr, B, len, md, mdlen, B + off, len + total - off);
        FUZZ_CHECK(rr == FC_SF_STOP && memcmp(B, B0, len + total) == 0,
                   "seal over its plaintext: %ld", rr);
        if (mdlen) {
            uint8_t *M = xmalloc(mdlen + total);
            memcpy(M, md, mdlen);
            memset(M + mdlen, FILL, total);
            uint8_t *M0 = dup_exact(M, mdlen + total);
            size_t mo = P[22] % mdlen;
            rr = fc_sf_seal(k, ctr, pt, len, M, mdlen, M + mo, mdlen + total - mo);
            FUZZ_CHECK(rr == FC_SF_STOP && memcmp(M, M0, mdlen + total) == 0,
                       "seal over its metadata: %ld", rr);
            free(M);
            free(M0);
        }
        free(B);
        free(B0);
    }

    free(S);
    free(aad);
    free(want);
    free(pt);
    fc_sf_key_free(k);
}

/* ------------------------------------------------------------------ entry ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    have_imb = fc_gcm_imb_available();
    fprintf(stderr, "fuzz_sframe: ipsec-mb backend %s\n",
            have_imb ? "available (EVP and IMB both fuzzed)" : "NOT available: IMB requests use EVP");
    /* key_new refuses bad sizes and ids */
    uint8_t k[96] = {0}, salt[13] = {0};
    for (int suite = 0; suite <= 9; suite++) {
        int nk = suite >= 1 && suite <= 8 ? RS[suite].nk : 16;
        FUZZ_CHECK(fc_sf_suite_nk(suite) == (suite >= 1 && suite <= 8 ? nk : 0), "suite_nk");
        if (suite < 1 || suite > 8) {
            FUZZ_CHECK(fc_sf_key_new(suite, 0, salt, 12, k, 16, NULL, 0) == NULL, "bad suite");
            continue;
        }
        FUZZ_CHECK(fc_sf_suite_nt(suite) == RS[suite].nt &&
                       fc_sf_suite_gcm(suite) == RS[suite].gcm,
                   "suite table");
        FUZZ_CHECK(fc_sf_key_new(suite, 0, salt, 11, k, (size_t)nk, NULL, 0) == NULL &&
                       fc_sf_key_new(suite, 0, salt, 13, k, (size_t)nk, NULL, 0) == NULL &&
                       fc_sf_key_new(suite, 0, salt, 12, k, (size_t)nk - 1, NULL, 0) == NULL &&
                       fc_sf_key_new(suite, 0, salt, 12, k, (size_t)nk + 1, NULL, 0) == NULL &&
                       fc_sf_key_new(suite, 0, salt, 12, NULL, 0, NULL, 0) == NULL,
                   "key_new accepted a bad size (suite %d)", suite);
        fc_gcm *g = borrowed(FC_BACKEND_EVP, 4, 0), *g32 = borrowed(FC_BACKEND_EVP, 5, 0);
        if (!RS[suite].gcm)
            FUZZ_CHECK(fc_sf_key_new(suite, 0, salt, 12, NULL, 0, g, 0) == NULL,
                       "a CTR suite took an fc_gcm");
        else
            FUZZ_CHECK(fc_sf_key_new(suite, 0, salt, 12, NULL, 0, suite == 4 ? g32 : g, 0) ==
                           NULL,
                       "GCM suite %d took an fc_gcm of the wrong size", suite);
    }
    atexit(report);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_header(data, size);
    if (size < NP)
        return 0;
    n_runs++;
    const uint8_t *P = data;
    uint64_t kid = field(P + 2, P[10]), ctr = field(P + 11, P[19]);
    check_encode(kid, ctr);
    size_t blen = size - NP;
    size_t mdlen = (((size_t)P[20] << 8) | P[21]) % (blen + 1);
    uint8_t *md = dup_exact(data + NP, mdlen);
    const uint8_t *X = data + NP + mdlen;
    size_t len = blen - mdlen;
    check_header(X, len);
    open_all(P, X, len, md, mdlen, kid, ctr);
    seal_one(P, X, len, md, mdlen, kid, ctr);
    FUZZ_CHECK(memcmp(md, data + NP, mdlen) == 0, "metadata modified");
    free(md);
    return 0;
}
