/*
 * threadnames.h — the names `threading` gives a target's threads.
 *
 * Owns: reading threading._active ({get_ident(): Thread}) of an
 * interpreter — found through its sys.modules, the module's __dict__, and
 * each Thread's `_name` instance attribute — into a cached map from
 * (interpreter, thread id) to a UTF-8 name, and deciding when to read it
 * again: PY_THREAD_NAMES_REFRESH_NS after the last read, or on a lookup
 * that misses once PY_THREAD_NAMES_MISS_GAP_NS have passed since the last
 * read (threads that `threading` does not know, like C threads, miss every
 * time and must not cost a read each).  At most PY_DICT_MAX_ENTRIES threads
 * per interpreter.  Never prints.
 */
#ifndef PYROMETER_THREADNAMES_H
#define PYROMETER_THREADNAMES_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "process.h"
#include "pyobj.h"

#define PY_THREAD_NAME_MAX 128          /* bytes, NUL included */
/* Reading sys.modules and threading._active takes tens of reads: at most
 * every 2 s, and on a miss every 0.5 s (time, not lookups, so that the
 * cost does not grow with the sampling rate). */
#define PY_THREAD_NAMES_REFRESH_NS 2000000000ull
#define PY_THREAD_NAMES_MISS_GAP_NS 500000000ull

struct py_thread_names;

struct py_thread_names *py_thread_names_new(void);
void py_thread_names_free(struct py_thread_names *tn);

/* The name of thread t (threading's Thread.name), or NULL when threading
 * does not know it (or cannot be read: names are best effort).  The string
 * stays valid until the next call on tn.  ctx must be over t's process. */
const char *py_thread_name(struct py_thread_names *tn, struct py_objctx *ctx,
                           const struct py_thread *t);

/* Re-read the names of interpreter interp now (py_thread_name does this
 * when needed).  0 with no names when threading is not imported; PM_ETORN
 * / PM_EREAD when its objects cannot be read consistently. */
int py_thread_names_refresh(struct py_thread_names *tn, struct py_objctx *ctx, uint64_t interp,
                            struct pm_error *err);

#endif
