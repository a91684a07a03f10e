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

/* How a receiver reads a frame's type from its clear bytes (no hint from the caller):
 * the kind of codec, as workers/livekit/codecs.py KF_KIND numbers them. */
#define FC_KF_NONE 0 /* audio, unknown: never a key frame (the rule does not depend on it) */
#define FC_KF_VP8 1  /* P bit of byte 0 */
#define FC_KF_VP9 2  /* uncompressed header: frame_type 0, not show_existing_frame */
#define FC_KF_AV1 3  /* first OBU after a temporal delimiter: a sequence header */
#define FC_KF_H264 4 /* a NAL unit of type 5 or 7 starts within the first 10 bytes */
#define FC_KF_H265 5 /* ... of type 16-21, 32 or 33 */

/* 1 if the frame in[0:len] (sealed or not) is a key frame by its payload, else 0; reads
 * at most 10 bytes. The same function as codecs.sealed_keyframe (the reference). */
int fc_lk_keyframe(int kind, const uint8_t *in, size_t len);

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
