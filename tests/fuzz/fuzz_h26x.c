/* libFuzzer target: every fc_h26x function on the whole input (an Annex B stream,
 * a header or an escaped body: the functions see all of these in fc_lk.c).
 *
 * Checks, for every input x of length n (outputs in exact-size heap buffers, so any
 * write past what the growth functions promised is an ASan report):
 *  - fc_h26x_clear_bytes(x, known), known in {0, H264, H265}: equals the reference
 *    port (h26x.clear_bytes) and is -1 or in [5, n + 1] (a NAL unit starts at >= 3,
 *    after a start code, and before n; the + 2 may run past n by one);
 *  - normalize: returned length == n + normalize_growth(x); bytes == reference;
 *  - escape: returned length == n + escape_growth(x); bytes == reference;
 *    unescape(escape(x)) == x; needs_unescape(escape(x)) == (escape_growth(x) > 0);
 *  - needs_unescape(x) == reference (a 00 00 03 that ends before the last byte);
 *  - unescape into n bytes: length <= n, bytes == reference, and its length is n minus
 *    the number of 00 00 03 the reference removed;
 *  - clear_bytes of the normalised header still points at the same NAL (shifted by
 *    the bytes normalisation added before it): what the receiver relies on. */
#include "fuzz_common.h"

static void check_clear(const uint8_t *x, size_t n)
{
    static const int knowns[3] = {0, FC_H264, FC_H265};
    for (int k = 0; k < 3; k++) {
        long got = fc_h26x_clear_bytes(x, n, knowns[k]);
        long want = ref_clear_bytes(x, n, knowns[k]);
        FUZZ_CHECK(got == want, "clear_bytes(known=%d) = %ld, reference %ld; x=%s",
                   knowns[k], got, want, hexs(x, n));
        FUZZ_CHECK(got == -1 || (got >= 5 && (size_t)got <= n + 1),
                   "clear_bytes = %ld out of [5, n+1], n=%zu", got, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *x = dup_exact(data, size);
    size_t n = size;

    check_clear(x, n);

    /* normalize */
    size_t ng = fc_h26x_normalize_growth(x, n);
    FUZZ_CHECK(ng <= n / 3 + 1, "normalize_growth %zu > n/3 + 1, n=%zu", ng, n);
    uint8_t *nz = xmalloc(n + ng);
    size_t nl = fc_h26x_normalize(x, n, nz);
    FUZZ_CHECK(nl == n + ng, "normalize length %zu != n + growth %zu", nl, n + ng);
    size_t rnl;
    uint8_t *rnz = ref_normalize(x, n, &rnl);
    FUZZ_CHECK(rnl == nl && memcmp(rnz, nz, nl) == 0, "normalize differs from reference; x=%s",
               hexs(x, n));
    /* normalising twice changes nothing (every start code now has 4 bytes) */
    FUZZ_CHECK(fc_h26x_normalize_growth(nz, nl) == 0, "normalize not idempotent; x=%s",
               hexs(x, n));

    /* the clear header, normalised, keeps its slice: the receiver's scan of the sealed
     * header (normalised) finds the NAL the sender's scan found */
    long cb = fc_h26x_clear_bytes(x, n, FC_H264);
    if (cb >= 0 && (size_t)cb <= n) {
        size_t hn = (size_t)cb + fc_h26x_normalize_growth(x, (size_t)cb);
        uint8_t *h = xmalloc(hn);
        FUZZ_CHECK(fc_h26x_normalize(x, (size_t)cb, h) == hn, "header normalize length");
        /* on the header alone the slice NAL header byte is the 2nd-to-last byte */
        int sl = hn >= 2 && (ref_is_slice(FC_H264, h[hn - 2]) || ref_is_slice(FC_H265, h[hn - 2]));
        FUZZ_CHECK(sl,
                   "normalised header does not end at a slice NAL; x=%s", hexs(x, n));
        free(h);
    }

    /* escape / unescape round trip */
    size_t eg = fc_h26x_escape_growth(x, n);
    uint8_t *es = xmalloc(n + eg);
    size_t el = fc_h26x_escape(x, n, es);
    FUZZ_CHECK(el == n + eg, "escape length %zu != n + growth %zu", el, n + eg);
    size_t rel;
    uint8_t *res = ref_escape(x, n, &rel);
    FUZZ_CHECK(rel == el && memcmp(res, es, el) == 0, "escape differs from reference; x=%s",
               hexs(x, n));
    FUZZ_CHECK(fc_h26x_needs_unescape(es, el) == (eg > 0),
               "needs_unescape(escape(x)) = %d but growth %zu; x=%s",
               fc_h26x_needs_unescape(es, el), eg, hexs(x, n));
    uint8_t *back = xmalloc(el);
    size_t bl = fc_h26x_unescape(es, el, back);
    FUZZ_CHECK(bl == n && memcmp(back, x, n) == 0, "unescape(escape(x)) != x; x=%s",
               hexs(x, n));
    /* escaped data holds no start code (what keeps the body out of the NAL scan) */
    FUZZ_CHECK(!ref_has_sc3(es, el),
               "escape(x) contains 00 00 01; x=%s", hexs(x, n));

    /* needs_unescape / unescape on the raw input */
    int nu = fc_h26x_needs_unescape(x, n);
    FUZZ_CHECK(nu == ref_needs_unescape(x, n), "needs_unescape = %d, reference %d; x=%s", nu,
               !nu, hexs(x, n));
    uint8_t *un = xmalloc(n);
    size_t ul = fc_h26x_unescape(x, n, un);
    size_t rul;
    uint8_t *run = ref_unescape(x, n, &rul);
    FUZZ_CHECK(ul <= n && ul == rul && memcmp(un, run, ul) == 0,
               "unescape differs from reference (%zu vs %zu); x=%s", ul, rul, hexs(x, n));
    if (!nu && n > 0) {
        /* no 00 00 03 before the last byte: at most the final 3 bytes can change */
        FUZZ_CHECK(ul == n || (ul == n - 1 && n >= 3 && x[n - 1] == 3 && x[n - 2] == 0 &&
                               x[n - 3] == 0),
                   "needs_unescape false but unescape removed %zu bytes; x=%s", n - ul,
                   hexs(x, n));
    }

    free(x);
    free(nz);
    free(rnz);
    free(es);
    free(res);
    free(back);
    free(un);
    free(run);
    return 0;
}
