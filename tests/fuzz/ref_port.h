/* The naive port of the Python reference (ref_port.c). Results are malloc'd; lengths
 * go to *outn. */
#ifndef FC_FUZZ_REF_PORT_H
#define FC_FUZZ_REF_PORT_H

#include <stddef.h>
#include <stdint.h>

#include "fc_h26x.h"
#include "fc_lk.h"

/* bytes.find(pat, start, end); end clamped to [0, n] */
long ref_find(const uint8_t *b, size_t n, const uint8_t *pat, size_t m, size_t start, long end);
/* h26x.nalu_indices: the count, or -1 on leading data (MalformedFrame); *out malloc'd */
long ref_nalu_indices(const uint8_t *s, size_t n, size_t **out);
int ref_is_slice(int codec, uint8_t b);
/* h26x.clear_bytes: -1 for None; known 0, FC_H264 or FC_H265 */
long ref_clear_bytes(const uint8_t *d, size_t n, int known);
uint8_t *ref_normalize(const uint8_t *h, size_t n, size_t *outn);
uint8_t *ref_escape(const uint8_t *b, size_t n, size_t *outn);
int ref_needs_unescape(const uint8_t *b, size_t n);
uint8_t *ref_unescape(const uint8_t *b, size_t n, size_t *outn);
/* the clear rule as fc_lk.c's callers pass it, resolved as codecs.clear_prefix does:
 * the clear byte count (may exceed len) or -1 (FC_STOP); *nal = 1 on the H.26x path */
long ref_clear_of(const uint8_t *in, size_t len, int rule, int vp8rule, int *nal);
/* a 00 00 01 anywhere in b */
int ref_has_sc3(const uint8_t *b, size_t n);

#endif
