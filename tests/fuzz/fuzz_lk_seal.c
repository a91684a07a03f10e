/* libFuzzer target: fc_lk_seal on arbitrary frames and rules, then fc_lk_open of what
 * it wrote.
 *
 * Input: 16 parameter bytes, then the plaintext frame X.
 *   p[0] bits 0-1  rule class: 0 FC_CLEAR_NAL264, 1 FC_CLEAR_NAL265,
 *                  2 rule = p[1] (0..255), 3 rule = p[1] % 16
 *        bit  2    vp8rule 10 (key frame) or 3 (delta)
 *        bits 3-4  key: 16, 24, 32 bytes (3: 16)
 *        bit  5    backend of the seal (EVP / IMB); the open uses the other one
 *        bits 6-7  output capacity: 0 what lk_seal allocates (len + len/2 + 47 for NAL
 *                  rules, len + 30 for fixed ones), 1 exactly the sealed length,
 *                  2 the sealed length - 1 - p[2] % 16 (must stop), 3 p[2] * 4;
 *                  in mode 0, p[2] bit 7: also seal into the input itself (must stop)
 *   p[3..15]       ssrc (4), timestamp (4), IV word (4), KID (1): the trailer
 *
 * Checks: no crash / sanitizer report; the result is FC_STOP or in [0, cap]; it is
 * byte for byte the reference seal (frame.seal_trailer: header, normalised for H.26x,
 * GCM by the other backend, escaped ct || tag || trailer for H.26x) whenever that fits
 * cap, FC_STOP otherwise; lk_seal's capacity formula always suffices; an output
 * overlapping the input is refused.
 *
 * Round trip: fc_lk_open(seal(X)) with the callers' capacity (sealed len - 30):
 *   the receiver re-derives the clear header from the *sealed* bytes (as
 *   livekit-client and frame.parse do). When that gives the sender's (count, nal)
 *   (count = normalised header length on the H.26x path), open must return
 *   H' || X[n:], where H' = normalize(X[:n]) on the H.26x path and X[:n] otherwise;
 *   i.e. X itself for fixed rules. When it does not (the ciphertext happens to hold a
 *   start code + slice byte after a no-slice stream, or the escaped body completes a
 *   start code begun by the header's last bytes and switches H.265 to H.264), the
 *   reference cannot open the frame either: then open must return FC_STOP (or the
 *   same plaintext). Both cases are counted and printed at exit. */
#include "fuzz_common.h"

static unsigned long n_runs, n_sealed, n_nal, n_stop, n_rt_ok, n_reparse_differs, n_reparse_stop;

static void report(void)
{
    fprintf(stderr,
            "fuzz_lk_seal stats: runs %lu, sealed %lu (H.26x path %lu), stopped %lu, round "
            "trips %lu; the receiver derives another header for %lu (of which %lu do not "
            "open: the reference's behaviour too)\n",
            n_runs, n_sealed, n_nal, n_stop, n_rt_ok, n_reparse_differs, n_reparse_stop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    atexit(report);
    return 0;
}

/* the reference seal with unlimited capacity: malloc'd frame, length in *outn;
 * -1 = the reference raises / the native path does not handle it */
static long ref_seal(fc_gcm *g, const uint8_t *x, size_t len, int rule, int vp8rule,
                     const uint8_t tr[FC_LK_TRAILER], uint8_t **outp, long *hdr_len, long *np,
                     int *nalp)
{
    *outp = NULL;
    int nal;
    long n = ref_clear_of(x, len, rule, vp8rule, &nal);
    *nalp = nal;
    *np = n;
    if (n < 0 || (size_t)n > len)
        return -1;
    size_t body = len - (size_t)n;
    size_t hn;
    uint8_t *hdr = nal ? ref_normalize(x, (size_t)n, &hn) : dup_exact(x, (size_t)n);
    if (!nal)
        hn = (size_t)n;
    *hdr_len = (long)hn;
    size_t rest = body + FC_LK_OVERHEAD;
    uint8_t *ctt = xmalloc(rest);
    static const uint8_t one[1];
    FUZZ_CHECK(fc_gcm_seal(g, tr, hdr, hn, body ? x + n : one, body, ctt, ctt + body) == 0,
               "reference GCM seal failed");
    memcpy(ctt + body + FC_TAG_LEN, tr, FC_LK_TRAILER);
    size_t tl = rest;
    uint8_t *tail = nal ? ref_escape(ctt, rest, &tl) : ctt;
    uint8_t *o = xmalloc(hn + tl);
    memcpy(o, hdr, hn);
    memcpy(o + hn, tail, tl);
    if (tail != ctt)
        free(tail);
    free(ctt);
    free(hdr);
    *outp = o;
    return (long)(hn + tl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 16)
        return 0;
    n_runs++;
    const uint8_t *p = data;
    int cls = p[0] & 3;
    int rule = cls == 0   ? FC_CLEAR_NAL264
               : cls == 1 ? FC_CLEAR_NAL265
               : cls == 2 ? p[1]
                          : p[1] % 16;
    int vp8rule = (p[0] & 4) ? 10 : 3;
    size_t keylen = keylen_of((p[0] >> 3) & 3);
    int backend = (p[0] & 0x20) ? FC_BACKEND_IMB : FC_BACKEND_EVP;
    int capmode = p[0] >> 6;
    uint8_t tr[FC_LK_TRAILER];
#define BE32(q) ((uint32_t)(q)[0] << 24 | (uint32_t)(q)[1] << 16 | (uint32_t)(q)[2] << 8 | (q)[3])
    fc_lk_trailer(tr, BE32(p + 3), BE32(p + 7), BE32(p + 11), p[15]);
    size_t len = size - 16;
    uint8_t *x = dup_exact(data + 16, len);
    fc_gcm *g = fuzz_gcm(backend, keylen);
    fc_gcm *g2 = fuzz_gcm(other_backend(backend), keylen);

    uint8_t *want = NULL;
    long hlen = 0, n0 = 0;
    int nal = 0;
    long w = !ref_rule_known(rule) ? -1
             : len ? ref_seal(g2, x, len, rule, vp8rule, tr, &want, &hlen, &n0, &nal)
                   : 0;

    size_t cap;
    switch (capmode) {
    case 0: cap = rule <= 250 ? (len ? len + FC_LK_OVERHEAD : 0)
                              : len + len / 2 + FC_LK_OVERHEAD + FC_LK_OVERHEAD / 2 + 2;
        break;
    case 1: cap = w > 0 ? (size_t)w : len + FC_LK_OVERHEAD; break;
    case 2: cap = w > 0 ? ((size_t)w > 1u + p[2] % 16 ? (size_t)w - 1 - p[2] % 16 : 0) : len;
        break;
    default: cap = (size_t)p[2] * 4; break;
    }
    uint8_t *out = xmalloc(cap);
    long r = fc_lk_seal(g, x, len, rule, vp8rule, tr, out, cap);
    FUZZ_CHECK(memcmp(x, data + 16, len) == 0, "fc_lk_seal modified its input");
    FUZZ_CHECK(r == FC_STOP || (r >= 0 && (size_t)r <= cap), "fc_lk_seal returned %ld, cap %zu",
               r, cap);
    long expect = (w >= 0 && (size_t)w <= cap) ? w : FC_STOP; /* empty: w = 0 */
    FUZZ_CHECK(r == expect,
               "fc_lk_seal = %ld, reference %ld (unlimited: %ld; rule %d vp8rule %d cap %zu "
               "capmode %d); X=%s",
               r, expect, w, rule, vp8rule, cap, capmode, hexs(x, len));
    if (capmode == 0)
        FUZZ_CHECK(w < 0 || r == w, "lk_seal's capacity %zu too small for %ld bytes", cap, w);
    if (r > 0)
        FUZZ_CHECK(memcmp(out, want, (size_t)r) == 0,
                   "fc_lk_seal output differs from the reference; X=%s", hexs(x, len));
    if (r < 0)
        n_stop++;
    if (capmode == 0 && (p[2] & 0x80) && len > 0) {
        long ro = fc_lk_seal(g, x, len, rule, vp8rule, tr, x, len);
        FUZZ_CHECK(ro == FC_STOP, "sealing over the input accepted: %ld", ro);
        FUZZ_CHECK(memcmp(x, data + 16, len) == 0, "overlapping seal wrote into its input");
    }

    if (r > 0) {
        n_sealed++;
        n_nal += (unsigned long)nal;
        /* plaintext the receiver should get: H' || X[n:] */
        size_t n = (size_t)n0;
        size_t plen = (size_t)hlen + (len - n);
        uint8_t *plain = xmalloc(plen);
        memcpy(plain, out, (size_t)hlen);
        memcpy(plain + hlen, x + n, len - n);
        if (!nal)
            FUZZ_CHECK(plen == len && memcmp(plain, x, len) == 0, "fixed-rule plaintext");

        int nal2;
        long n2 = ref_clear_of(out, (size_t)r, rule, vp8rule, &nal2);
        int same = n2 == hlen && nal2 == nal;

        size_t ocap = (size_t)r - FC_LK_OVERHEAD; /* what lk_open / open_run give it */
        for (int b = 0; b < 2; b++) {
            fc_gcm *go = b ? g : g2;
            uint8_t *back = xmalloc(ocap);
            long o = fc_lk_open(go, out, (size_t)r, rule, vp8rule, back, ocap);
            FUZZ_CHECK(o == FC_STOP || (o >= 0 && (size_t)o <= ocap),
                       "fc_lk_open returned %ld, cap %zu", o, ocap);
            int ok = o >= 0 && (size_t)o == plen && memcmp(back, plain, plen) == 0;
            if (same)
                FUZZ_CHECK(ok, "round trip failed: open = %ld, expected %zu (rule %d, nal %d, "
                               "header %ld); X=%s",
                           o, plen, rule, nal, hlen, hexs(x, len));
            else
                FUZZ_CHECK(ok || o == FC_STOP,
                           "re-derived header differs (%ld/%d vs %ld/%d) yet open = %ld; X=%s",
                           n2, nal2, hlen, nal, o, hexs(x, len));
            if (b == 0 && ok)
                n_rt_ok++;
            if (b == 0 && !same && !ok)
                n_reparse_stop++;
            free(back);
        }
        if (!same)
            n_reparse_differs++;
        free(plain);
    }
    free(x);
    free(out);
    free(want);
    return 0;
}
