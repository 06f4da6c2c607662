/*
 * objects.h — reading simple CPython objects (str, bytes; 2.7's byte
 * strings) out of a target.
 * Owns: copying an object's header and payload through a reader, with every
 * length bounded and the object's type checked when its type object's
 * address is known.  Decoding is left to pystr.c.  Never prints.
 */
#ifndef PYROMETER_OBJECTS_H
#define PYROMETER_OBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "../target/reader.h"
#include "layout.h"

struct py_objects {
    struct reader *reader;
    const struct py_layout *layout;
    uint64_t unicode_type;   /* &PyUnicode_Type, 0 = unchecked */
    uint64_t bytes_type;     /* &PyBytes_Type, 0 = unchecked */
    uint64_t string_type;    /* 2.7: &PyString_Type, 0 = unchecked */
};

/* Longest string we copy (characters); longer ones are truncated. */
#define PY_STR_MAX_CHARS 4096

/* Read the str object at addr as UTF-8 into out (cap bytes, NUL-terminated).
 * On 2.7 (layout string_sval set) a str is a PyStringObject of bytes: they
 * are copied as UTF-8, each byte that is not part of valid UTF-8 becoming
 * U+FFFD.  PM_ETORN when it is not a str or its header is implausible. */
int py_read_str(const struct py_objects *o, uint64_t addr, char *out, size_t cap,
                struct pm_error *err);

/* Read the bytes object at addr into a malloc'd buffer (*out, *len); at most
 * max_len bytes, PM_ETORN when larger or not a bytes object. */
int py_read_bytes(const struct py_objects *o, uint64_t addr, size_t max_len, uint8_t **out,
                  size_t *len, struct pm_error *err);

#endif
