/* The LiveKit / Jitsi frame H ‖ AES-GCM(body) ‖ tag ‖ IV ‖ 0x0C ‖ KID, one frame at a
 * time, between caller buffers: what workers/livekit/frame.py (the reference) does on
 * its success paths. Anything else (errors, SIF, LKTS, ratchets) returns FC_STOP and
 * the caller hands the frame to the reference, which raises the typed error. */
#ifndef FC_LK_H
#define FC_LK_H

#include "fc_gcm.h"

#define FC_STOP (-1L)
#define FC_LK_OVERHEAD 30
#define FC_LK_TRAILER 14

/* clear-header rule of a (codec, keyframe): 0..250 bytes, or one of these */
#define FC_CLEAR_NAL264 252 /* H.264 NAL scan (VP8 rule if none): LiveKit only */
#define FC_CLEAR_NAL265 253
#define FC_CLEAR_STOP 254   /* not for the native path (unknown codec id) */

/* Seal into out[0:cap]; returns the sealed length or FC_STOP. ``rule`` is the clear
 * rule; ``vp8rule`` the byte count used when a NAL scan finds no slice. An empty
 * frame passes through (length 0). */
long fc_lk_seal(fc_gcm *g, const uint8_t *in, size_t len, int rule, int vp8rule,
                const uint8_t trailer[FC_LK_TRAILER], uint8_t *out, size_t cap);

/* The key a sealed frame names: its KID byte (caller checks len >= 30 for fixed
 * rules); -1 when the frame is too short to name one. */
int fc_lk_kid(const uint8_t *in, size_t len);

/* Open into out[0:cap] with ``g``; returns the plaintext length (header included) or
 * FC_STOP (malformed, not authentic, or too small an output). */
long fc_lk_open(fc_gcm *g, const uint8_t *in, size_t len, int rule, int vp8rule,
                uint8_t *out, size_t cap);

/* Pack IV ‖ 0x0C ‖ KID: ssrc ‖ ts ‖ word, big-endian. */
void fc_lk_trailer(uint8_t t[FC_LK_TRAILER], uint32_t ssrc, uint32_t ts, uint32_t word,
                   uint8_t kid);

#endif
