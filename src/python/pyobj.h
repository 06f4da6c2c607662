/*
 * pyobj.h — reading ordinary objects (None, bool, int, float, str, bytes,
 * tuple, list, dict, module, cell) out of a target, for reprs, locals and
 * thread names.
 *
 * Owns: struct py_objctx (a reader, the version's struct py_objlayout and a
 * small cache of recognised type objects), telling an object's kind, and
 * copying the payloads of int and str.  A builtin type is recognised by its
 * tp_name on a static (non-heap) type object that also carries the type's
 * fast-subclass flag (Py_TPFLAGS_LONG_SUBCLASS, ...) where it has one: the
 * flag guarantees the instance layout the reader then relies on.  Every
 * pointer is read through the reader, every length bounded.  Never prints.
 */
#ifndef PYROMETER_PYOBJ_H
#define PYROMETER_PYOBJ_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "../target/reader.h"
#include "objlayout.h"

struct py_process;

enum py_kind {
    PY_KIND_OTHER = 0,
    PY_KIND_NONE,
    PY_KIND_BOOL,
    PY_KIND_INT,
    PY_KIND_FLOAT,
    PY_KIND_STR,
    PY_KIND_BYTES,
    PY_KIND_TUPLE,
    PY_KIND_LIST,
    PY_KIND_DICT,
    PY_KIND_MODULE,
    PY_KIND_CELL,
};

#define PY_OBJCTX_TYPE_CACHE 64

struct py_objctx {
    struct reader *reader;                 /* borrowed */
    const struct py_objlayout *layout;
    struct {
        uint64_t type;                     /* 0 = empty */
        enum py_kind kind;
    } types[PY_OBJCTX_TYPE_CACHE];         /* static type objects only */
};

/* Set ctx up for CPython major.minor over reader (borrowed).
 * PM_EUNSUPPORTED when there is no table for that version. */
int py_objctx_init(struct py_objctx *ctx, struct reader *reader, int major, int minor,
                   struct pm_error *err);
/* The same for an attached process (its reader and version). */
int py_objctx_init_process(struct py_objctx *ctx, struct py_process *py, struct pm_error *err);

/* The type object of the object at addr and what kind of object it is.
 * PM_EREAD when addr or its type cannot be read. */
int py_object_kind(struct py_objctx *ctx, uint64_t addr, enum py_kind *kind, uint64_t *type,
                   struct pm_error *err);

/* tp_name of the type object at type (truncated to cap-1 bytes). */
int py_type_name(struct py_objctx *ctx, uint64_t type, char *out, size_t cap,
                 struct pm_error *err);

/* Code points of the str at addr (the caller has checked its kind): at most
 * cap are copied into cps, *total is the str's length.  PM_ETORN when the
 * header is implausible. */
int py_str_codepoints(struct py_objctx *ctx, uint64_t addr, uint32_t *cps, size_t cap,
                      size_t *copied, uint64_t *total, struct pm_error *err);

/* The str at addr as NUL-terminated UTF-8 (truncated to cap-1 bytes on a
 * character boundary).  Checks the kind: PM_ETORN when it is not a str. */
int py_str_utf8(struct py_objctx *ctx, uint64_t addr, char *out, size_t cap,
                struct pm_error *err);

/* Is the object at addr a str equal to the ASCII string s?  One read. */
int py_str_equals(struct py_objctx *ctx, uint64_t addr, const char *s, int *equal,
                  struct pm_error *err);

/* The magnitude digits (least significant first, each < 2^long_shift) and
 * sign (-1, 0, 1) of the int or bool at addr; at most cap digits (PM_ETORN
 * when it has more: *ndigits then tells how many). */
int py_long_digits(struct py_objctx *ctx, uint64_t addr, int *sign, uint32_t *digits,
                   size_t cap, size_t *ndigits, struct pm_error *err);

/* The int at addr as a 64-bit two's complement value (thread idents are
 * unsigned longs): PM_ETORN when it is not an int or needs more than 64 bits. */
int py_long_u64(struct py_objctx *ctx, uint64_t addr, uint64_t *value, struct pm_error *err);

#endif
