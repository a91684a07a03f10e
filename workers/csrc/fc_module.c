/* framecrypt._native: the compiled hot loop (CPython C API).
 *
 * AesGcm: cryptography's AESGCM interface over a precomputed key schedule (ipsec-mb
 * or EVP), wiped on release. seal_run/open_run: the engine's batch loop for the
 * LiveKit/Jitsi frame between caller buffers; they stop at the first frame they
 * do not handle (errors, SIF, LKTS, ratchets) and the Python reference takes it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "fc_gcm.h"
#include "fc_dave.h"
#include "fc_dave_h26x.h"
#include "fc_h26x.h"
#include "fc_lk.h"

static PyObject *InvalidTag; /* cryptography.exceptions.InvalidTag */

/* ---------------------------------------------------------------- AesGcm */

typedef struct {
    PyObject_HEAD
    fc_gcm *g;
} AesGcmObject;

static PyTypeObject AesGcmType;

static PyObject *AesGcm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", "backend", NULL};
    Py_buffer key;
    int backend = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|i", kwlist, &key, &backend))
        return NULL;
    if (key.len != 16 && key.len != 24 && key.len != 32) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "AESGCM key must be 128, 192, or 256 bits.");
        return NULL;
    }
    if (backend != 0 && backend != FC_BACKEND_EVP && backend != FC_BACKEND_IMB) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "unknown backend");
        return NULL;
    }
    if (backend == FC_BACKEND_IMB && !fc_gcm_imb_available()) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the multi-buffer backend is not available");
        return NULL;
    }
    AesGcmObject *self = (AesGcmObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->g = fc_gcm_new(key.buf, (size_t)key.len, backend);
        if (self->g == NULL) {
            Py_DECREF(self);
            self = NULL;
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&key);
    return (PyObject *)self;
}

static void AesGcm_dealloc(AesGcmObject *self)
{
    fc_gcm_free(self->g);
    self->g = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *AesGcm_repr(AesGcmObject *self)
{
    return PyUnicode_FromFormat("AesGcm(AES-%d, %s)", fc_gcm_keylen(self->g) * 8,
                                fc_gcm_kind(self->g) == FC_BACKEND_IMB ? "ipsec-mb" : "evp");
}

/* Positional and keyword arguments, by cryptography's names, into ``out[want]``. */
static const char *const ARG_NAMES[] = {"nonce", "data", "associated_data", "buf"};

static int resolve(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, Py_ssize_t want,
                   PyObject **out)
{
    if (nargs > want) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments (%zd given)", want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t idx = -1;
        for (Py_ssize_t i = 0; i < want; i++)
            if (PyUnicode_CompareWithASCIIString(name, ARG_NAMES[i]) == 0)
                idx = i;
        if (idx < 0) {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument %R", name);
            return -1;
        }
        if (out[idx] != NULL) {
            PyErr_Format(PyExc_TypeError, "multiple values for argument %R", name);
            return -1;
        }
        out[idx] = args[nargs + j];
    }
    for (Py_ssize_t i = 0; i < want; i++)
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "missing argument '%s'", ARG_NAMES[i]);
            return -1;
        }
    return 0;
}

/* A writable output buffer; a read-only one is a TypeError, as in cryptography. */
static int get_out(PyObject *o, Py_buffer *b)
{
    if (PyObject_GetBuffer(o, b, PyBUF_WRITABLE) == 0)
        return 0;
    if (PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "buf must be a writable buffer");
    }
    return -1;
}

/* nonce, data, aad (or None): the checks cryptography makes, with the 12-byte nonce
 * the native path supports (others: ValueError, the caller keeps cryptography). */
static int get_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, Py_buffer *nonce,
                    Py_buffer *data, Py_buffer *aad)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments", want);
        return -1;
    }
    if (PyObject_GetBuffer(args[0], nonce, PyBUF_SIMPLE) < 0)
        return -1;
    if (nonce->len != FC_IV_LEN) {
        PyBuffer_Release(nonce);
        PyErr_SetString(PyExc_ValueError, "the native AES-GCM takes 12-byte nonces");
        return -1;
    }
    if (PyObject_GetBuffer(args[1], data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(nonce);
        return -1;
    }
    aad->buf = NULL;
    aad->obj = NULL;
    aad->len = 0;
    if (args[2] != Py_None && PyObject_GetBuffer(args[2], aad, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(nonce);
        PyBuffer_Release(data);
        return -1;
    }
    if (data->len > INT32_MAX - FC_TAG_LEN || aad->len > INT32_MAX) {
        PyBuffer_Release(nonce);
        PyBuffer_Release(data);
        if (aad->obj)
            PyBuffer_Release(aad);
        PyErr_SetString(PyExc_OverflowError, "Data or associated data too long. Max 2**31 - 1 bytes");
        return -1;
    }
    return 0;
}

static void release3(Py_buffer *a, Py_buffer *b, Py_buffer *c)
{
    PyBuffer_Release(a);
    PyBuffer_Release(b);
    if (c->obj)
        PyBuffer_Release(c);
}

static const uint8_t empty[1];
#define PTR(b) ((b)->len ? (const uint8_t *)(b)->buf : empty)

static PyObject *AesGcm_encrypt(AesGcmObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    Py_buffer nonce, data, aad;
    PyObject *a[3];
    if (resolve(args, nargs, kwnames, 3, a) < 0 || get_args(a, 3, 3, &nonce, &data, &aad) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, data.len + FC_TAG_LEN);
    if (out != NULL) {
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
        if (fc_gcm_seal(self->g, nonce.buf, PTR(&aad), (size_t)aad.len, PTR(&data),
                        (size_t)data.len, o, o + data.len) != 0) {
            Py_CLEAR(out);
            PyErr_SetString(PyExc_RuntimeError, "AES-GCM seal failed");
        }
    }
    release3(&nonce, &data, &aad);
    return out;
}

static PyObject *AesGcm_decrypt(AesGcmObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    Py_buffer nonce, data, aad;
    PyObject *a[3];
    if (resolve(args, nargs, kwnames, 3, a) < 0 || get_args(a, 3, 3, &nonce, &data, &aad) < 0)
        return NULL;
    PyObject *out = NULL;
    if (data.len < FC_TAG_LEN) {
        PyErr_SetNone(InvalidTag);
    } else {
        Py_ssize_t n = data.len - FC_TAG_LEN;
        out = PyBytes_FromStringAndSize(NULL, n);
        if (out != NULL &&
            fc_gcm_open(self->g, nonce.buf, PTR(&aad), (size_t)aad.len, PTR(&data), (size_t)n,
                        (const uint8_t *)data.buf + n, (uint8_t *)PyBytes_AS_STRING(out)) != 0) {
            Py_CLEAR(out);
            PyErr_SetNone(InvalidTag);
        }
    }
    release3(&nonce, &data, &aad);
    return out;
}

static PyObject *AesGcm_encrypt_into(AesGcmObject *self, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames)
{
    Py_buffer nonce, data, aad, buf;
    PyObject *a[4];
    if (resolve(args, nargs, kwnames, 4, a) < 0 || get_args(a, 3, 3, &nonce, &data, &aad) < 0)
        return NULL;
    if (get_out(a[3], &buf) < 0) {
        release3(&nonce, &data, &aad);
        return NULL;
    }
    PyObject *ret = NULL;
    if (buf.len != data.len + FC_TAG_LEN) {
        PyErr_Format(PyExc_ValueError, "buffer must be %zd bytes", data.len + FC_TAG_LEN);
    } else {
        uint8_t *o = buf.buf;
        if (fc_gcm_seal(self->g, nonce.buf, PTR(&aad), (size_t)aad.len, PTR(&data),
                        (size_t)data.len, o, o + data.len) != 0)
            PyErr_SetString(PyExc_RuntimeError, "AES-GCM seal failed");
        else
            ret = PyLong_FromSsize_t(buf.len);
    }
    PyBuffer_Release(&buf);
    release3(&nonce, &data, &aad);
    return ret;
}

static PyObject *AesGcm_decrypt_into(AesGcmObject *self, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames)
{
    Py_buffer nonce, data, aad, buf;
    PyObject *a[4];
    if (resolve(args, nargs, kwnames, 4, a) < 0 || get_args(a, 3, 3, &nonce, &data, &aad) < 0)
        return NULL;
    if (get_out(a[3], &buf) < 0) {
        release3(&nonce, &data, &aad);
        return NULL;
    }
    PyObject *ret = NULL;
    if (data.len < FC_TAG_LEN) {
        PyErr_SetNone(InvalidTag);
    } else if (buf.len != data.len - FC_TAG_LEN) {
        PyErr_Format(PyExc_ValueError, "buffer must be %zd bytes", data.len - FC_TAG_LEN);
    } else {
        Py_ssize_t n = buf.len;
        if (fc_gcm_open(self->g, nonce.buf, PTR(&aad), (size_t)aad.len, PTR(&data), (size_t)n,
                        (const uint8_t *)data.buf + n, buf.buf) != 0)
            PyErr_SetNone(InvalidTag);
        else
            ret = PyLong_FromSsize_t(n);
    }
    PyBuffer_Release(&buf);
    release3(&nonce, &data, &aad);
    return ret;
}

static PyObject *AesGcm_backend(AesGcmObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(fc_gcm_kind(self->g) == FC_BACKEND_IMB ? "ipsec-mb" : "evp");
}

static PyObject *AesGcm_reduce(AesGcmObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyErr_SetString(PyExc_TypeError, "AesGcm keys cannot be pickled");
    return NULL;
}

static PyMethodDef AesGcm_methods[] = {
    {"encrypt", (PyCFunction)(void (*)(void))AesGcm_encrypt, METH_FASTCALL | METH_KEYWORDS,
     "encrypt(nonce, data, associated_data) -> ciphertext ‖ tag"},
    {"decrypt", (PyCFunction)(void (*)(void))AesGcm_decrypt, METH_FASTCALL | METH_KEYWORDS,
     "decrypt(nonce, data, associated_data) -> plaintext (InvalidTag)"},
    {"encrypt_into", (PyCFunction)(void (*)(void))AesGcm_encrypt_into, METH_FASTCALL | METH_KEYWORDS,
     "encrypt_into(nonce, data, associated_data, buf) -> len(buf)"},
    {"decrypt_into", (PyCFunction)(void (*)(void))AesGcm_decrypt_into, METH_FASTCALL | METH_KEYWORDS,
     "decrypt_into(nonce, data, associated_data, buf) -> len(buf)"},
    {"__reduce__", (PyCFunction)AesGcm_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef AesGcm_getset[] = {
    {"backend", (getter)AesGcm_backend, NULL, "ipsec-mb or evp", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject AesGcmType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "framecrypt._native.AesGcm",
    .tp_basicsize = sizeof(AesGcmObject),
    .tp_dealloc = (destructor)AesGcm_dealloc,
    .tp_repr = (reprfunc)AesGcm_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AES-GCM with a precomputed key schedule (cryptography's AESGCM interface, "
              "12-byte nonces)",
    .tp_methods = AesGcm_methods,
    .tp_getset = AesGcm_getset,
    .tp_new = AesGcm_new,
};

static fc_gcm *key_of(PyObject *o)
{
    if (Py_TYPE(o) != &AesGcmType) {
        PyErr_SetString(PyExc_TypeError, "expected a framecrypt._native.AesGcm");
        return NULL;
    }
    return ((AesGcmObject *)o)->g;
}

#include "fc_runs.inc"
#include "fc_util.inc"
#include "fc_sframe.inc"
#include "fc_dave.inc"
#include "fc_dave_h26x.inc"
#include "fc_dave_rx.inc"
#include "fc_dave_tx.inc"
#include "fc_dave_run.inc"

/* ---------------------------------------------------------------- module */

static PyObject *mod_setup(PyObject *m, PyObject *arg)
{
    (void)m;
    long want = PyLong_AsLong(arg);
    if (want == -1 && PyErr_Occurred())
        return NULL;
    if (want < 0 || want > 2) {
        PyErr_SetString(PyExc_ValueError, "backend: 0 (best), 1 (evp) or 2 (ipsec-mb)");
        return NULL;
    }
    int got = fc_gcm_setup((int)want);
    if (got < 0) {
        PyErr_SetString(PyExc_ValueError, "the multi-buffer backend is not available");
        return NULL;
    }
    return PyLong_FromLong(got);
}

static PyObject *mod_info(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    int b = fc_gcm_backend();
    return Py_BuildValue(
        "{s:s,s:s,s:O,s:s,s:O}", "backend",
        b == FC_BACKEND_IMB ? "ipsec-mb" : (b == FC_BACKEND_EVP ? "evp" : "none"),
        "backend_version", fc_gcm_backend_name(b), "ipsec_mb_available",
        fc_gcm_imb_available() ? Py_True : Py_False, "reason", fc_gcm_reason(), "sanitized",
#ifdef FC_SANITIZED
        Py_True
#else
        Py_False
#endif
    );
}

static PyMethodDef module_methods[] = {
    {"setup", mod_setup, METH_O, "setup(backend) -> backend used (0 best, 1 evp, 2 ipsec-mb)"},
    {"info", mod_info, METH_NOARGS, "which backend runs and why"},
    RUN_METHODS
    UTIL_METHODS
    SFRAME_METHODS
    DAVE_METHODS
    DAVE_H26X_METHODS
    DAVE_RX_METHODS
    DAVE_RUN_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "framecrypt._native", "framecrypt's compiled hot loop", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&AesGcmType) < 0)
        return NULL;
    PyObject *exc = PyImport_ImportModule("cryptography.exceptions");
    if (exc == NULL)
        return NULL;
    InvalidTag = PyObject_GetAttrString(exc, "InvalidTag");
    Py_DECREF(exc);
    if (InvalidTag == NULL)
        return NULL;
    if (fc_gcm_backend() == 0)
        fc_gcm_setup(0);
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (dave_rx_ready(m) < 0 || dave_tx_ready(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AesGcmType);
    if (PyModule_AddObject(m, "AesGcm", (PyObject *)&AesGcmType) < 0 ||
        PyModule_AddIntConstant(m, "STOP", FC_STOP) < 0 ||
        PyModule_AddIntConstant(m, "CLEAR_NAL264", FC_CLEAR_NAL264) < 0 ||
        PyModule_AddIntConstant(m, "CLEAR_NAL265", FC_CLEAR_NAL265) < 0 ||
        PyModule_AddIntConstant(m, "CLEAR_STOP", FC_CLEAR_STOP) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
