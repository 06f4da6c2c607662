/*
 * heap.h — a census of the live, GC-tracked objects of a target Python, by
 * type: how many objects and how many bytes (shallow size) of each.
 *
 * Owns: finding the garbage collector's generation lists (per interpreter
 * on 3.9+, in _PyRuntime on 3.7 and 3.8, a static array on 2.7 and 3.6),
 * walking them out of process over a local copy of the target's memory
 * taken in large blocks (so a million objects cost about as many system
 * calls as megabytes of heap, not one per object), sizing each object from
 * its type, naming types as Python shows them, and comparing two
 * censuses.  Never runs code in the target and never prints.
 *
 * Shallow size is what object.__sizeof__ gives for a plain object:
 * tp_basicsize + |ob_size| * tp_itemsize (3.12+ int subclasses: the digit
 * count of lv_tag); buffers an object owns separately (a list's item array,
 * a dict's table) and the GC header are not counted, nor the frame slots of
 * 3.11+ generators and frames, which keep no ob_size.
 *
 * Safety: every list walk is bounded, cycle-checked and checks that each
 * node's back link names the node it came from.  The caller chooses to stop
 * the target's threads for the census (blocking: one consistent snapshot)
 * or not: then the target may change a list while it is copied; a broken
 * link is re-read fresh and followed only where the list is consistent
 * again; a walk that stays broken, or wanders onto another list, is walked
 * again from a fresh copy (a few times), then the census fails with
 * PM_ETORN.  Type objects are
 * checked (their own type must be a type) before their fields are trusted.
 */
#ifndef PYROMETER_HEAP_H
#define PYROMETER_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "../target/maps.h"
#include "../target/reader.h"
#include "gclayout.h"
#include "pyobj.h"

struct py_process;

/* Longest type name kept (bytes, NUL included); longer ones are cut. */
#define HEAP_NAME_MAX 256

struct heap_type_count {
    char name[HEAP_NAME_MAX];  /* "__main__.Session", "dict", "collections.deque" */
    uint64_t count;            /* objects */
    uint64_t size;             /* their shallow bytes */
};

struct heap_census {
    struct heap_type_count *types;  /* by size, largest first (then count, name) */
    size_t ntypes;
    uint64_t objects, size;         /* totals over every type */
    uint64_t unreadable;            /* objects whose type could not be read */
    size_t interpreters;            /* interpreters whose lists were walked */
    size_t lists;                   /* generation lists walked */
    unsigned retries;               /* lists walked again after a torn walk */
    uint64_t relinks;               /* broken links re-read fresh and followed */
    uint64_t copied;                /* bytes copied out of the target */
    uint64_t syscalls;              /* reads of the target it took */
    int paused;                     /* the target was stopped while counted */
};

struct heap_options {
    uint64_t max_copy;              /* bytes of target memory it may copy (0: default) */
    uint64_t max_objects;           /* objects in one list before it is refused (0: default) */
    int blocking;                   /* stop the target's threads while counting */
    unsigned tries;                 /* walks of a torn list before it fails (0: 5) */
    /* called now and then during a walk (NULL: never) */
    void (*progress)(void *ctx, uint64_t objects, uint64_t copied);
    void *progress_ctx;
};

#define HEAP_DEFAULT_MAX_COPY (4ull << 30)
#define HEAP_DEFAULT_MAX_OBJECTS (200000000ull)

/* What heap_census_lists walks: GC list heads (each the address of a
 * generation's PyGC_Head) in memory read through `reader`. */
struct heap_source {
    struct reader *reader;
    const struct py_gclayout *gc;
    struct py_objctx *objects;      /* names heap types module.qualname (3.8+); NULL:
                                       heap types are named by tp_name */
    const struct proc_maps *maps;   /* bounds the block copies; NULL: no bounds, a
                                       block that cannot be read whole is read
                                       piece by piece */
    const uint64_t *heads;
    size_t nheads;
    /* an int in the GC state that is nonzero while a collection runs (0: none) */
    uint64_t collecting;
};

/* Count the objects on src's lists.  Errors: PM_ETORN (a list stayed
 * inconsistent), PM_EREAD (a head cannot be read), PM_EUSAGE (more than
 * max_copy bytes would be copied, or a list longer than max_objects: the
 * message says which option raises the limit), PM_EGONE, PM_EPERM. */
int heap_census_lists(const struct heap_source *src, const struct heap_options *opts,
                      struct heap_census *out, struct pm_error *err);

/* The census of an attached process: every interpreter's generations and
 * its permanent generation.  PM_EUNSUPPORTED names a version or a binary
 * whose GC lists cannot be found. */
int heap_census_process(struct py_process *py, const struct heap_options *opts,
                        struct heap_census *out, struct pm_error *err);

void heap_census_free(struct heap_census *c);

/* One type's change between two censuses. */
struct heap_growth {
    const char *name;               /* borrowed from a census */
    uint64_t count_before, count_after;
    uint64_t size_before, size_after;
    int64_t count_delta, size_delta;
};

/* The types that grew from `before` to `after` (more objects or more
 * bytes), largest size growth first (then count growth, name).  *out is
 * malloc'd (free it); names point into the censuses.  -1 on ENOMEM. */
int heap_growth(const struct heap_census *before, const struct heap_census *after,
                struct heap_growth **out, size_t *count);

#endif
