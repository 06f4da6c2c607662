/*
 * locals.h — the arguments and local variables of one Python frame.
 *
 * Owns: pairing a code object's local names (co_varnames and co_cellvars
 * up to 3.10, co_localsplusnames with co_localspluskinds from 3.11) with
 * the frame's local slots (PyFrameObject.f_localsplus up to 3.10,
 * _PyInterpreterFrame.localsplus from 3.11), telling arguments from other
 * locals, and reading through cells for variables captured by inner
 * functions.  Free variables (the enclosing function's) and 3.12+ hidden
 * comprehension slots are left out; so are unbound locals.  Values are
 * object addresses, for py_repr().  Never prints.
 */
#ifndef PYROMETER_LOCALS_H
#define PYROMETER_LOCALS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "process.h"
#include "pyobj.h"

#define PY_LOCAL_NAME_MAX 128
#define PY_LOCALS_MAX 1024      /* local slots of one frame we look at, at most */

struct py_local {
    char name[PY_LOCAL_NAME_MAX];   /* UTF-8 */
    uint64_t value;                 /* object address, never 0 */
    int is_arg;                     /* a parameter (incl. *args, **kwargs) */
};

/* The bound arguments and locals of frame f (from py_thread_stack, read in
 * the same sample), in definition order, at most cap; *count is how many
 * were filled.  A module-level or class-body frame has none (its names live
 * in a dict).  PM_ETORN / PM_EREAD when the code object or the frame
 * cannot be read consistently. */
int py_frame_locals(struct py_objctx *ctx, const struct py_frame *f, struct py_local *out,
                    size_t cap, size_t *count, struct pm_error *err);

#endif
