/* The reference port of fuzz_common.h as a plain shared library, for
 * ref_port_check.py: checks the port itself against the Python reference, so that
 * the fuzz targets' verdicts rest on the Python semantics, not on the port. */
#include "fuzz_common.h"

long rp_clear_bytes(const uint8_t *d, size_t n, int known) { return ref_clear_bytes(d, n, known); }
int rp_needs_unescape(const uint8_t *d, size_t n) { return ref_needs_unescape(d, n); }

/* out: room for 2 * n + 2 bytes; returns the length */
static size_t copy_out(uint8_t *r, size_t rn, uint8_t *out)
{
    memcpy(out, r, rn);
    free(r);
    return rn;
}
size_t rp_normalize(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_normalize(d, n, &rn);
    return copy_out(r, rn, out);
}
size_t rp_escape(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_escape(d, n, &rn);
    return copy_out(r, rn, out);
}
size_t rp_unescape(const uint8_t *d, size_t n, uint8_t *out)
{
    size_t rn;
    uint8_t *r = ref_unescape(d, n, &rn);
    return copy_out(r, rn, out);
}
