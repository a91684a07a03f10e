/* AES-GCM with a precomputed key schedule: Intel's multi-buffer library where the
 * CPU has AES-NI (and the library was there at build time), OpenSSL's EVP else.
 * Key schedules live in memory this module allocates and wipes on release. */
#ifndef FC_GCM_H
#define FC_GCM_H

#include <stddef.h>
#include <stdint.h>

#define FC_IV_LEN 12
#define FC_TAG_LEN 16

enum fc_backend { FC_BACKEND_EVP = 1, FC_BACKEND_IMB = 2 };

typedef struct fc_gcm fc_gcm;

/* Once per process: pick the backend. ``want`` 0 = best available, else one of
 * enum fc_backend (refused with -1 if not available). Returns the backend. */
int fc_gcm_setup(int want);
int fc_gcm_backend(void);
const char *fc_gcm_backend_name(int backend);
/* Why the multi-buffer library is (not) used, for native_info(). */
const char *fc_gcm_reason(void);
int fc_gcm_imb_available(void);

/* NULL on a bad key length (16, 24, 32) or out of memory. */
fc_gcm *fc_gcm_new(const uint8_t *key, size_t keylen, int backend);
void fc_gcm_free(fc_gcm *g); /* wipes the schedule */
int fc_gcm_keylen(const fc_gcm *g);
int fc_gcm_kind(const fc_gcm *g);

/* out: len bytes of ciphertext, then the 16-byte tag written at ``tag``.
 * in and out may be the same pointer (not partially overlapping). 0 = ok. */
int fc_gcm_seal(fc_gcm *g, const uint8_t iv[FC_IV_LEN], const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[FC_TAG_LEN]);
/* 0 = authentic (out holds the plaintext), -1 = not (out is zeroed). */
int fc_gcm_open(fc_gcm *g, const uint8_t iv[FC_IV_LEN], const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t len, const uint8_t tag[FC_TAG_LEN], uint8_t *out);

void fc_wipe(void *p, size_t n);

#endif
