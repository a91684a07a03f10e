/* The DAVE sender's H.264 / H.265 framing in C: byte for byte what
 * workers/dave/h26x.py (h26x_frame, has_start_code_leak) and workers/dave/frame.py
 * (seal with any clear ranges, seal_h26x) do. The frame is rebuilt NAL unit by NAL
 * unit behind 4-byte start codes, the start codes, non-VCL units and VCL headers stay
 * clear, the rest is sealed; a sealed frame whose encrypted sections (or footer) hold
 * a start code is sealed again under the next nonce, up to FC_DAVE_H26X_ATTEMPTS.
 *
 * Return codes: a length (>= 0); FC_DAVE_STOP (-1, fc_dave.h): the C path stops and
 * the caller hands the frame to the reference (out of room, more than
 * FC_DAVE_MAX_RANGES ranges, invalid ranges, a footer over 255 bytes, nonces that
 * would leave the generation); FC_DAVE_H26X_MALFORMED (-2) where the reference raises
 * MalformedFrame; FC_DAVE_H26X_DROPPED (-3) where it raises DroppedFrame. */
#ifndef FC_DAVE_H26X_H
#define FC_DAVE_H26X_H

#include "fc_dave.h"

#define FC_DAVE_H26X_MALFORMED (-2L)
#define FC_DAVE_H26X_DROPPED (-3L)
#define FC_DAVE_H26X_ATTEMPTS 10 /* h26x.MAX_ATTEMPTS */

/* Bytes the rewritten frame of an n-byte frame takes at most (a 3-byte start code
 * becomes 4 bytes: at most one byte more per 3 input bytes). */
size_t fc_dave_h26x_max(size_t n);
/* Bytes a sealed frame of ``len`` with ``nranges`` clear ranges takes at most. */
size_t fc_dave_ranges_sealed_max(size_t len, size_t nranges);
/* Bytes fc_dave_seal_h26x needs for an n-byte frame: the rewrite and a whole footer. */
size_t fc_dave_h26x_sealed_max(size_t n);

/* h26x.h26x_frame(codec, in[0:n]) (``h265``: 0 = H.264, else H.265): the rewritten
 * frame into out[0:cap], its clear ranges (adjacent clear chunks merged) into *r;
 * returns its length, FC_DAVE_H26X_MALFORMED (a slice header past its NAL unit, an
 * exp-Golomb value of 32 or more leading zeros) or FC_DAVE_STOP (out too small, more
 * than FC_DAVE_MAX_RANGES ranges). A frame too short for one NAL unit is copied
 * whole with no range. On failure out holds nothing of the frame. */
long fc_dave_h26x_rewrite(int h265, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                          fc_dave_ranges *r);

/* h26x.has_start_code_leak(sealed[0:n], r): whether an encrypted section (with 2
 * bytes either side), or the part from the last clear range to the end, holds
 * 00 00 01. Any ranges (the reference's arithmetic, offsets past n included); each
 * off + size and their running sums must fit a size_t. */
int fc_dave_start_code_leak(const uint8_t *sealed, size_t n, const fc_dave_ranges *r);

/* frame.seal(key, nonce, in[0:len], r): the bytes outside the ranges encrypted in
 * place (AAD: the ranges' bytes concatenated), then the footer with every range;
 * into out[0:cap], which must be in itself or not overlap it. Returns the sealed
 * length or FC_DAVE_STOP (ranges out of order or out of the frame, cap below
 * len + footer, footer over 255 bytes); on FC_DAVE_STOP out holds no plaintext. */
long fc_dave_seal_ranges(fc_gcm *g, uint32_t nonce, const uint8_t *in, size_t len,
                         const fc_dave_ranges *r, uint8_t *out, size_t cap);

/* frame.seal_h26x(key, first_nonce, codec, in[0:n]): rewrite, then seal under
 * first_nonce + a for a = 0 .. FC_DAVE_H26X_ATTEMPTS - 1 until no start code leaks;
 * *attempts = the nonces used (the nonce of the result is first_nonce + *attempts
 * - 1). Returns the sealed length, FC_DAVE_H26X_MALFORMED, FC_DAVE_H26X_DROPPED
 * (every attempt leaked, *attempts = FC_DAVE_H26X_ATTEMPTS) or FC_DAVE_STOP.
 *
 * ``g`` is the key of one generation, the nonce's top byte: this stops (before
 * sealing anything) when first_nonce + FC_DAVE_H26X_ATTEMPTS - 1 would carry into
 * the next generation (or wrap 32 bits), i.e. when (first_nonce & 0xFFFFFF) + 9 >
 * 0xFFFFFF; the caller then seals on the reference path (dave.Sender.seal takes
 * each nonce's key from its ratchet). out (cap >= fc_dave_h26x_sealed_max(n) never stops for room) must
 * not overlap in; on any negative return out holds no plaintext. */
long fc_dave_seal_h26x(fc_gcm *g, uint32_t first_nonce, int h265, const uint8_t *in, size_t n,
                       uint8_t *out, size_t cap, unsigned *attempts);

#endif
