/* SFrame (RFC 9605) in C: the header codec (§4.3) and the AEADs of every suite
 * workers/sframe/suites.py registers (§4.5, §4.5.1): AES-GCM (0x0004, 0x0005) over
 * fc_gcm, AES-CTR + truncated HMAC-SHA-256/512 (0x0001-0x0003, provisional
 * 0x0006-0x0008) over OpenSSL. What workers/sframe/ (the reference) does on its
 * success paths; every other case returns a negative code and the caller hands the
 * frame to the reference, which raises the typed error. */
#ifndef FC_SFRAME_H
#define FC_SFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "fc_gcm.h"

#define FC_SF_MAX_HEADER 17 /* config byte + 8 KID bytes + 8 CTR bytes */
#define FC_SF_NONCE 12      /* Nn of every registered suite */
#define FC_SF_MAX_TAG 16
/* Longest frame or AAD handled here (EVP takes int lengths); longer: the reference. */
#define FC_SF_MAX_LEN ((size_t)0x7FFFFF00)

/* fc_sf_header_decode results (all < 0) */
#define FC_SF_EMPTY (-1)
#define FC_SF_TRUNCATED (-2)
#define FC_SF_NONMIN_KID (-3)
#define FC_SF_NONMIN_CTR (-4)

/* fc_sf_seal / fc_sf_open results (all < 0): the reference decides */
#define FC_SF_STOP (-1L)    /* no room, too long, a library error */
#define FC_SF_SHORT (-2L)   /* body shorter than the tag */
#define FC_SF_NOTAUTH (-3L) /* tag mismatch (nothing of the plaintext is left in out) */

/* The header of (kid, ctr) into out; returns its length (1..17). */
int fc_sf_header_encode(uint64_t kid, uint64_t ctr, uint8_t out[FC_SF_MAX_HEADER]);
/* Strict decode (no truncation, minimal lengths only, as header.py): the header
 * length (1..17) or one of FC_SF_EMPTY .. FC_SF_NONMIN_CTR. */
int fc_sf_header_decode(const uint8_t *p, size_t n, uint64_t *kid, uint64_t *ctr);

typedef struct fc_sf_key fc_sf_key;

/* Nk of a registered suite id, 0 if the id is not one handled here. */
int fc_sf_suite_nk(int suite);
int fc_sf_suite_nt(int suite);
int fc_sf_suite_gcm(int suite);

/* The state of one (suite, KID, sframe_key, sframe_salt). For GCM suites either
 * ``gcm`` (a key schedule the caller keeps alive and frees: borrowed) or ``key`` of
 * Nk bytes with ``backend`` (0 best, else enum fc_backend); for CTR+HMAC suites
 * ``key`` of Nk = Nka + Nh bytes. NULL on bad sizes or no memory. Everything keyed
 * (CTR context, HMAC inner/outer states, salt) is wiped by fc_sf_key_free. */
fc_sf_key *fc_sf_key_new(int suite, uint64_t kid, const uint8_t *salt, size_t saltlen,
                         const uint8_t *key, size_t keylen, fc_gcm *gcm, int backend);
void fc_sf_key_free(fc_sf_key *k);
int fc_sf_key_suite(const fc_sf_key *k);
int fc_sf_key_nt(const fc_sf_key *k);
uint64_t fc_sf_key_kid(const fc_sf_key *k);
/* FC_BACKEND_IMB / FC_BACKEND_EVP of the AEAD (CTR+HMAC suites: EVP). */
int fc_sf_key_backend(const fc_sf_key *k);

/* Bytes of the frame that sealing ``len`` bytes at ``ctr`` gives (header + len + Nt). */
size_t fc_sf_sealed_len(const fc_sf_key *k, uint64_t ctr, size_t len);

/* header(kid, ctr) || AEAD(nonce = salt ^ ctr, aad = header || md, pt) into
 * out[0:cap]; returns the frame length, or FC_SF_STOP. ``pt`` and ``out`` must not
 * overlap (checked: FC_SF_STOP). */
long fc_sf_seal(fc_sf_key *k, uint64_t ctr, const uint8_t *pt, size_t len, const uint8_t *md,
                size_t mdlen, uint8_t *out, size_t cap);

/* Open frame[0:len] whose header (frame[0:hlen]) was decoded to this KID and ``ctr``:
 * the plaintext into out[0:cap]; returns its length, or FC_SF_SHORT, FC_SF_NOTAUTH,
 * FC_SF_STOP (no room, overlap, too long). */
long fc_sf_open(fc_sf_key *k, const uint8_t *frame, size_t len, size_t hlen, uint64_t ctr,
                const uint8_t *md, size_t mdlen, uint8_t *out, size_t cap);

/* The bare AEAD of the suite with a 12-byte nonce (aead.py's seal/open): out gets
 * len + Nt bytes (seal) or len - Nt (open). 0 = ok; open: FC_SF_SHORT/NOTAUTH. */
long fc_sf_aead_seal(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *aad,
                     size_t aadlen, const uint8_t *pt, size_t len, uint8_t *out);
long fc_sf_aead_open(fc_sf_key *k, const uint8_t nonce[FC_SF_NONCE], const uint8_t *aad,
                     size_t aadlen, const uint8_t *ct, size_t len, uint8_t *out);

#endif
