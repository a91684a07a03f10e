/* libFuzzer target: fc_lk_open on arbitrary bytes.
 *
 * Input: 4 parameter bytes, then the sealed frame F (the seeds in corpus/fuzz_lk_open
 * are real frames sealed with fuzz_key(), so the success path is reached too).
 *   p[0] bits 0-1  rule class: 0 FC_CLEAR_NAL264, 1 FC_CLEAR_NAL265,
 *                  2 rule = p[1] (0..255: 251, 254, 255 must stop), 3 rule = p[1] % 16
 *        bit  2    vp8rule 10 (key frame) or 3 (delta); bit 7 set: vp8rule = p[2] % 251
 *        bits 3-4  key: 16, 24, 32 bytes (3: 16)
 *        bit  5    backend: EVP or ipsec-mb (IMB)
 *        bit  6    also open into a buffer overlapping the input (must stop)
 *   p[2] bits 0-1  output capacity: 0 the callers' (len - 30, 0 below 30 bytes),
 *                  1 the callers' minus p[3] % 64, 2 p[3], 3 the callers' + p[3]
 *   p[3]           capacity adjustment
 * The output buffer is a heap block of exactly ``cap`` bytes and F an exact heap copy.
 *
 * Checks: no crash / ASan / UBSan report; the result is FC_STOP or in [0, cap]; it
 * equals, byte for byte, the naive port of the Python reference (frame.parse +
 * Sealed.open, h26x.*) decrypting with the *other* backend (a GCM differential); the
 * same call with the other backend gives the same result; the input is not modified;
 * rules of no codec (251, 254, 255) stop, empty frames included; fc_lk_kid is the last
 * byte; an output overlapping the input is refused. */
#include "fuzz_common.h"

static unsigned long n_runs, n_opened, n_nal;

static void report(void)
{
    fprintf(stderr, "fuzz_lk_open stats: runs %lu, opened (authentic) %lu, of which H.26x %lu\n",
            n_runs, n_opened, n_nal);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    atexit(report);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    n_runs++;
    uint8_t p0 = data[0], p1 = data[1], p2 = data[2], p3 = data[3];
    int cls = p0 & 3;
    int rule = cls == 0   ? FC_CLEAR_NAL264
               : cls == 1 ? FC_CLEAR_NAL265
               : cls == 2 ? p1
                          : p1 % 16;
    int vp8rule = (p0 & 0x80) ? p2 % 251 : (p0 & 4) ? 10 : 3;
    size_t keylen = keylen_of((p0 >> 3) & 3);
    int backend = (p0 & 0x20) ? FC_BACKEND_IMB : FC_BACKEND_EVP;
    size_t len = size - 4;
    size_t callers = len >= FC_LK_OVERHEAD ? len - FC_LK_OVERHEAD : 0;
    size_t cap;
    switch (p2 & 3) {
    case 0: cap = callers; break;
    case 1: cap = callers > (size_t)(p3 % 64) ? callers - p3 % 64 : 0; break;
    case 2: cap = p3; break;
    default: cap = callers + p3; break;
    }

    uint8_t *in = dup_exact(data + 4, len);
    uint8_t *out = xmalloc(cap);
    fc_gcm *g = fuzz_gcm(backend, keylen);
    fc_gcm *g2 = fuzz_gcm(other_backend(backend), keylen);

    long r = fc_lk_open(g, in, len, rule, vp8rule, out, cap);
    FUZZ_CHECK(r == FC_STOP || (r >= 0 && (size_t)r <= cap),
               "fc_lk_open returned %ld, cap %zu", r, cap);
    FUZZ_CHECK(memcmp(in, data + 4, len) == 0, "fc_lk_open modified its input");
    if (!ref_rule_known(rule))
        FUZZ_CHECK(r == FC_STOP, "rule %d must stop, got %ld", rule, r);

    uint8_t *want;
    long w = ref_lk_open(g2, in, len, rule, vp8rule, cap, &want);
    FUZZ_CHECK(r == w, "fc_lk_open = %ld, reference %ld (rule %d vp8rule %d cap %zu); F=%s",
               r, w, rule, vp8rule, cap, hexs(in, len));
    if (r > 0)
        FUZZ_CHECK(memcmp(out, want, (size_t)r) == 0, "fc_lk_open plaintext differs; F=%s",
                   hexs(in, len));

    if (r >= 0 && len) {
        int nal;
        n_opened++;
        ref_clear_of(in, len, rule, vp8rule, &nal);
        n_nal += (unsigned long)nal;
    }

    /* the other backend: same answer, same bytes */
    uint8_t *out2 = xmalloc(cap);
    long r2 = fc_lk_open(g2, in, len, rule, vp8rule, out2, cap);
    FUZZ_CHECK(r2 == r, "backends disagree: %ld vs %ld", r, r2);
    if (r > 0)
        FUZZ_CHECK(memcmp(out, out2, (size_t)r) == 0, "backends' plaintexts differ");

    FUZZ_CHECK(fc_lk_kid(in, len) == (len ? in[len - 1] : -1), "fc_lk_kid");

    /* an output overlapping the input is refused (callers never do it; the function
     * says it checks) */
    if ((p0 & 0x40) && len > 0) {
        size_t off = p3 % len;
        long ro = fc_lk_open(g, in, len, rule, vp8rule, in + off, len - off);
        FUZZ_CHECK(ro == FC_STOP, "overlapping output accepted: %ld", ro);
        FUZZ_CHECK(memcmp(in, data + 4, len) == 0, "overlapping open wrote into its input");
    }

    free(in);
    free(out);
    free(out2);
    free(want);
    return 0;
}
