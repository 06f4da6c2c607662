/*
 * pyrepr.h — short, bounded reprs of a target's objects, as Python's repr()
 * would write them where we can.
 *
 * Owns: repr of None, bool, int (any size up to PY_REPR_INT_DIGITS digits),
 * float (shortest round-trip, Python's rules for exponents), str and bytes
 * (Python's quoting and escapes), tuple, list and dict (at most
 * PY_REPR_MAX_ITEMS items then "...", containers nested at most
 * PY_REPR_MAX_DEPTH deep), and `<TYPE object at 0x...>` for anything else.
 * A repr is cut to the caller's buffer with a trailing "...", on a UTF-8
 * character boundary.  Bounded work whatever the target holds: a cycle
 * cannot loop (depth is bounded).  Never prints.
 */
#ifndef PYROMETER_PYREPR_H
#define PYROMETER_PYREPR_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "pyobj.h"

#define PY_REPR_MAX 120        /* suggested repr length (bytes), for buffers of 121 */
#define PY_REPR_MAX_ITEMS 8
#define PY_REPR_MAX_DEPTH 2    /* containers inside containers inside one: "[...]" */
#define PY_REPR_INT_DIGITS 64  /* 30-bit digits; larger ints: "<int of N bits>" */

/* Write the repr of the object at addr into out (cap >= 8 bytes, always
 * NUL-terminated).  Returns 0; when the object itself cannot be read,
 * writes "<unreadable>" and returns -1 with err filled (PM_EREAD /
 * PM_ETORN).  Parts of a container that cannot be read show as
 * "<unreadable>" inside it. */
int py_repr(struct py_objctx *ctx, uint64_t addr, char *out, size_t cap, struct pm_error *err);

/* Python's repr(float) of v into out (cap >= 32): "0.1", "1e+16", "-0.0",
 * "inf", "nan".  Exposed for tests. */
void py_repr_float(double v, char *out, size_t cap);

/* Python's repr(str) of n code points into out (cap >= 8), cut with "..."
 * when it does not fit; `more` says the str goes on past cps (adds "...").
 * Exposed for tests. */
void py_repr_str_codepoints(const uint32_t *cps, size_t n, int more, char *out, size_t cap);

/* Python's repr(bytes) of data into out (cap >= 8), cut like the others. */
void py_repr_bytes_data(const uint8_t *data, size_t n, int more, char *out, size_t cap);

/* Decimal text of a non-negative int given as base 2^shift digits (least
 * significant first) into out; returns the length, or -1 when out (cap) is
 * too small.  Exposed for tests. */
int py_repr_digits(const uint32_t *digits, size_t n, unsigned shift, int negative, char *out,
                   size_t cap);

#endif
