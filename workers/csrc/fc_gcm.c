#include "fc_gcm.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#ifdef FC_HAVE_IPSECMB
#include <intel-ipsec-mb.h>
static IMB_MGR *imb_mgr;
#endif

static int backend_chosen;
static const char *reason = "not set up";

struct fc_gcm {
    int kind;
    int keylen;
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
#ifdef FC_HAVE_IPSECMB
    struct gcm_key_data *imb; /* 64-byte aligned */
#endif
};

void fc_wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

int fc_gcm_imb_available(void)
{
#ifdef FC_HAVE_IPSECMB
    if (imb_mgr == NULL) {
        IMB_MGR *m = alloc_mb_mgr(0);
        if (m == NULL)
            return 0;
        init_mb_mgr_auto(m, NULL);
        if (imb_get_errno(m) != 0 || !(m->features & IMB_FEATURE_AESNI) ||
            !(m->features & IMB_FEATURE_PCLMULQDQ)) {
            free_mb_mgr(m);
            return 0;
        }
        imb_mgr = m;
    }
    return 1;
#else
    return 0;
#endif
}

int fc_gcm_setup(int want)
{
    int imb = fc_gcm_imb_available();
    if (want == FC_BACKEND_IMB && !imb)
        return -1;
    if (want == FC_BACKEND_EVP || (want == 0 && !imb)) {
        backend_chosen = FC_BACKEND_EVP;
#ifdef FC_HAVE_IPSECMB
        reason = want == FC_BACKEND_EVP ? "EVP asked for"
                                        : "the CPU lacks AES-NI/PCLMULQDQ for ipsec-mb";
#else
        reason = "built without intel-ipsec-mb";
#endif
    } else {
        backend_chosen = FC_BACKEND_IMB;
        reason = want == FC_BACKEND_IMB ? "ipsec-mb asked for" : "AES-NI present";
    }
    return backend_chosen;
}

int fc_gcm_backend(void) { return backend_chosen; }

const char *fc_gcm_reason(void) { return reason; }

const char *fc_gcm_backend_name(int backend)
{
    switch (backend) {
    case FC_BACKEND_IMB:
#ifdef FC_HAVE_IPSECMB
        return "ipsec-mb " IMB_VERSION_STR;
#else
        return "ipsec-mb";
#endif
    case FC_BACKEND_EVP:
        return OPENSSL_VERSION_TEXT;
    default:
        return "none";
    }
}

static const EVP_CIPHER *evp_cipher(size_t keylen)
{
    switch (keylen) {
    case 16:
        return EVP_aes_128_gcm();
    case 24:
        return EVP_aes_192_gcm();
    case 32:
        return EVP_aes_256_gcm();
    }
    return NULL;
}

fc_gcm *fc_gcm_new(const uint8_t *key, size_t keylen, int backend)
{
    const EVP_CIPHER *cipher = evp_cipher(keylen);
    if (cipher == NULL)
        return NULL;
    if (backend == 0)
        backend = backend_chosen ? backend_chosen : fc_gcm_setup(0);
    fc_gcm *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->keylen = (int)keylen;
    g->kind = backend;
#ifdef FC_HAVE_IPSECMB
    if (backend == FC_BACKEND_IMB) {
        if (!fc_gcm_imb_available())
            goto fail;
        g->imb = aligned_alloc(64, (sizeof(struct gcm_key_data) + 63) & ~(size_t)63);
        if (g->imb == NULL)
            goto fail;
        if (keylen == 16)
            IMB_AES128_GCM_PRE(imb_mgr, key, g->imb);
        else if (keylen == 24)
            IMB_AES192_GCM_PRE(imb_mgr, key, g->imb);
        else
            IMB_AES256_GCM_PRE(imb_mgr, key, g->imb);
        return g;
    }
#endif
    if (backend != FC_BACKEND_EVP)
        goto fail;
    g->enc = EVP_CIPHER_CTX_new();
    g->dec = EVP_CIPHER_CTX_new();
    if (g->enc == NULL || g->dec == NULL ||
        EVP_EncryptInit_ex(g->enc, cipher, NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(g->dec, cipher, NULL, key, NULL) != 1)
        goto fail;
    return g;
fail:
    fc_gcm_free(g);
    return NULL;
}

void fc_gcm_free(fc_gcm *g)
{
    if (g == NULL)
        return;
#ifdef FC_HAVE_IPSECMB
    if (g->imb != NULL) {
        fc_wipe(g->imb, sizeof *g->imb);
        free(g->imb);
    }
#endif
    EVP_CIPHER_CTX_free(g->enc); /* OpenSSL cleanses the key schedule */
    EVP_CIPHER_CTX_free(g->dec);
    fc_wipe(g, sizeof *g);
    free(g);
}

int fc_gcm_keylen(const fc_gcm *g) { return g->keylen; }

int fc_gcm_kind(const fc_gcm *g) { return g->kind; }

/* EVP takes int lengths: callers keep frames < 2**31 (checked at the Python boundary). */
int fc_gcm_seal(fc_gcm *g, const uint8_t iv[FC_IV_LEN], const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[FC_TAG_LEN])
{
#ifdef FC_HAVE_IPSECMB
    if (g->imb != NULL) {
        struct gcm_context_data ctx;
        if (g->keylen == 16)
            IMB_AES128_GCM_ENC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, tag,
                               FC_TAG_LEN);
        else if (g->keylen == 24)
            IMB_AES192_GCM_ENC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, tag,
                               FC_TAG_LEN);
        else
            IMB_AES256_GCM_ENC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, tag,
                               FC_TAG_LEN);
        fc_wipe(&ctx, sizeof ctx);
        return 0;
    }
#endif
    int n = 0;
    EVP_CIPHER_CTX *c = g->enc;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1)
        return -1;
    if (aadlen && EVP_EncryptUpdate(c, NULL, &n, aad, (int)aadlen) != 1)
        return -1;
    if (len && EVP_EncryptUpdate(c, out, &n, in, (int)len) != 1)
        return -1;
    if (EVP_EncryptFinal_ex(c, out + len, &n) != 1)
        return -1;
    return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, FC_TAG_LEN, tag) == 1 ? 0 : -1;
}

int fc_gcm_open(fc_gcm *g, const uint8_t iv[FC_IV_LEN], const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t len, const uint8_t tag[FC_TAG_LEN], uint8_t *out)
{
#ifdef FC_HAVE_IPSECMB
    if (g->imb != NULL) {
        struct gcm_context_data ctx;
        uint8_t got[FC_TAG_LEN];
        if (g->keylen == 16)
            IMB_AES128_GCM_DEC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, got,
                               FC_TAG_LEN);
        else if (g->keylen == 24)
            IMB_AES192_GCM_DEC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, got,
                               FC_TAG_LEN);
        else
            IMB_AES256_GCM_DEC(imb_mgr, g->imb, &ctx, out, in, len, iv, aad, aadlen, got,
                               FC_TAG_LEN);
        fc_wipe(&ctx, sizeof ctx);
        if (CRYPTO_memcmp(got, tag, FC_TAG_LEN) != 0) {
            if (len)
                memset(out, 0, len);
            return -1;
        }
        return 0;
    }
#endif
    int n = 0;
    EVP_CIPHER_CTX *c = g->dec;
    uint8_t t[FC_TAG_LEN];
    memcpy(t, tag, FC_TAG_LEN); /* EVP's ctrl takes a non-const pointer */
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, FC_TAG_LEN, t) != 1 ||
        (aadlen && EVP_DecryptUpdate(c, NULL, &n, aad, (int)aadlen) != 1) ||
        (len && EVP_DecryptUpdate(c, out, &n, in, (int)len) != 1) ||
        EVP_DecryptFinal_ex(c, out + len, &n) != 1) {
        if (len)
            memset(out, 0, len);
        return -1;
    }
    return 0;
}
