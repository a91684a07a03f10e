/* Test helpers of the libFuzzer targets (tests/fuzz/): invariant checks, exact-size
 * heap copies, hex for messages. */
#ifndef FC_FUZZ_UTIL_H
#define FC_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#if defined(OPENSSL_EVP_H) || defined(HEADER_ENVELOPE_H) /* <openssl/evp.h> first */
/* The reference AES-GCM seal over OpenSSL's one-shot EVP (not fc_gcm): ``cipher`` is
 * EVP_aes_128_gcm() or EVP_aes_256_gcm(), the tag is the whole 16 bytes. */
static inline void ref_evp_gcm_seal(const EVP_CIPHER *cipher, const uint8_t *key,
                                    const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                                    const uint8_t *pt, size_t len, uint8_t *ct,
                                    uint8_t tag[16])
{
    int n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = c && EVP_EncryptInit_ex(c, cipher, NULL, key, iv) == 1 &&
             (aadlen == 0 || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aadlen) == 1) &&
             (len == 0 || EVP_EncryptUpdate(c, ct, &n, pt, (int)len) == 1) &&
             EVP_EncryptFinal_ex(c, ct + len, &n) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    FUZZ_CHECK(ok, "reference GCM seal");
}
#endif

#endif
