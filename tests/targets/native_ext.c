/*
 * native_ext.c — a tiny C extension for the native-unwinding tests
 * (tests/e2e/test_native.py builds it against each interpreter's headers;
 * CPython 2.7 and 3.x).
 *
 * spin(n): loops n times in C without releasing the GIL, so a sample taken
 * meanwhile finds `spin` (this file's own symbol) as the innermost native
 * frame, called straight from the Python frame that called spin().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *spin(PyObject *self, PyObject *arg)
{
    (void)self;
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    volatile unsigned long long acc = 0;
    for (long long i = 0; i < n; i++)
        acc = acc * 31u + (unsigned long long)i;
    return PyLong_FromUnsignedLongLong(acc);
}

static PyMethodDef methods[] = {
    {"spin", spin, METH_O, "Loop n times in C."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native_ext", "C functions for native-unwinding tests.", -1, methods,
};

PyMODINIT_FUNC PyInit_native_ext(void)
{
    return PyModule_Create(&module);
}
#else
PyMODINIT_FUNC initnative_ext(void)
{
    Py_InitModule3("native_ext", methods, "C functions for native-unwinding tests.");
}
#endif
