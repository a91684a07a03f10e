/* Discord DAVE frames, one at a time, between caller buffers: the success paths of
 * workers/dave/frame.py (the reference). Seal: the codecs whose clear part is one
 * prefix (Opus, VP9: none; VP8: its payload header); H.264/H.265 and AV1 stay in the
 * reference. Open: any frame whose footer parses and authenticates. Everything else
 * returns FC_DAVE_STOP and the caller hands the frame to the reference, which raises
 * the typed error (the stop contract of docs/native.md). */
#ifndef FC_DAVE_H
#define FC_DAVE_H

#include "fc_gcm.h"

#define FC_DAVE_STOP (-1L)
#define FC_DAVE_TAG 8
#define FC_DAVE_MAX_FOOTER 255 /* the supplemental size is one byte */
#define FC_DAVE_MAX_RANGES 128 /* a 255-byte footer holds at most 121 pairs */

/* Unencrypted ranges (offset, size), in order, not overlapping. */
typedef struct {
    size_t n;
    size_t off[FC_DAVE_MAX_RANGES], size[FC_DAVE_MAX_RANGES];
} fc_dave_ranges;

/* The 96-bit AES-GCM nonce of a 32-bit truncated nonce: 0^8 || u32le(nonce). */
void fc_dave_gcm_iv(uint8_t iv[FC_IV_LEN], uint32_t nonce);

/* ULEB128 of v at p (at most 10 bytes); returns the bytes written. */
size_t fc_dave_uleb_put(uint8_t *p, uint64_t v);

/* Bytes a sealed frame of ``len`` takes at most with a ``clear``-byte prefix. */
size_t fc_dave_sealed_max(size_t len);

/* Seal in[0:len] (in[0:clear] stays clear and is the AAD) with the 32-bit truncated
 * ``nonce`` into out[0:cap]; returns the sealed length or FC_DAVE_STOP (clear > len,
 * out too small). out must not overlap in. */
long fc_dave_seal(fc_gcm *g, uint32_t nonce, const uint8_t *in, size_t len, size_t clear,
                  uint8_t *out, size_t cap);

/* The truncated nonce of a sealed frame (footer parsed as the reference does), or -1
 * when the footer does not parse. */
long long fc_dave_nonce(const uint8_t *in, size_t len);

/* Open in[0:len] into out[0:cap]; returns the plaintext length or FC_DAVE_STOP
 * (malformed, more than FC_DAVE_MAX_RANGES ranges, not authentic, out too small). On
 * FC_DAVE_STOP out[0:cap] holds no plaintext. */
long fc_dave_open(fc_gcm *g, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

#endif
