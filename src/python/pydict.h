/*
 * pydict.h — dicts and instance attributes of a target's objects.
 *
 * Owns: walking a PyDictObject's entries (combined and split tables, the
 * 3.8–3.10 and the 3.11+ key-table layouts), looking a str key up by
 * comparing keys (no hashing: str hashes are randomised per process), and
 * finding an object's attribute in its instance dict, including 3.11+
 * managed dicts and inline values with the type's shared keys.  Every
 * table is bounded (PY_DICT_MAX_ENTRIES) and read through the reader.
 * Never prints.
 */
#ifndef PYROMETER_PYDICT_H
#define PYROMETER_PYDICT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "pyobj.h"

/* Entries of one table we look at, at most: a larger table is walked up to
 * here only. */
#define PY_DICT_MAX_ENTRIES 4096u

struct py_dict_item {
    uint64_t key, value;      /* object addresses */
};

/* The first items (at most cap, in entry order) of the dict at addr; *used
 * is the dict's own count (ma_used), which may be larger.  The object's
 * kind must be checked by the caller (or use py_dict_get_str).  PM_ETORN
 * when the table is implausible, PM_EREAD on a bad pointer.  Entry order is
 * insertion order except in split tables that had keys deleted. */
int py_dict_items(struct py_objctx *ctx, uint64_t dict, struct py_dict_item *out, size_t cap,
                  size_t *count, uint64_t *used, struct pm_error *err);

/* The value stored under the str key `key` in the dict at addr: *value is
 * 0 when absent.  PM_ETORN when addr is not a dict. */
int py_dict_get_str(struct py_objctx *ctx, uint64_t dict, const char *key, uint64_t *value,
                    struct pm_error *err);

/* The instance attribute `name` of the object at obj (its __dict__,
 * managed dict or inline values; not class attributes, not descriptors):
 * *value is 0 when absent. */
int py_object_attr(struct py_objctx *ctx, uint64_t obj, const char *name, uint64_t *value,
                   struct pm_error *err);

#endif
