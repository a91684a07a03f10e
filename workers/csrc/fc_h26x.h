/* H.264 / H.265 Annex B for the LiveKit frame format: byte for byte what
 * workers/livekit/h26x.py (the reference) does. */
#ifndef FC_H26X_H
#define FC_H26X_H

#include <stddef.h>
#include <stdint.h>

enum { FC_H264 = 1, FC_H265 = 2 };

/* The first 00 00 01 starting in [from, limit) that fits wholly below ``limit``, or -1
 * (Python's bytes.find(b"\x00\x00\x01", from, limit)); memchr scans for the 01. */
long fc_h26x_find_sc3(const uint8_t *p, size_t from, size_t limit);

/* Clear-header length (first slice NAL offset + 2; may exceed n), or -1 when no NAL
 * processing applies (no start code, leading data, no slice). ``known``: FC_H264,
 * FC_H265 or 0. */
long fc_h26x_clear_bytes(const uint8_t *p, size_t n, int known);
/* Bytes normalize() adds to a header (one per 3-byte start code not after a 00). */
size_t fc_h26x_normalize_growth(const uint8_t *p, size_t n);
/* Writes the normalised header to out (n + growth bytes); returns its length. */
size_t fc_h26x_normalize(const uint8_t *p, size_t n, uint8_t *out);
/* Emulation-prevention bytes escape() inserts. */
size_t fc_h26x_escape_growth(const uint8_t *p, size_t n);
/* Escape ``p`` into ``out`` (n + growth bytes); returns the length written. */
size_t fc_h26x_escape(const uint8_t *p, size_t n, uint8_t *out);
/* livekit-client's test: a 00 00 03 that ends before the last byte. */
int fc_h26x_needs_unescape(const uint8_t *p, size_t n);
/* Drop every 03 of a 00 00 03 into out (at most n bytes); returns the length. */
size_t fc_h26x_unescape(const uint8_t *p, size_t n, uint8_t *out);

#endif
