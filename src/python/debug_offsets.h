/*
 * debug_offsets.h — CPython 3.13+'s _Py_DebugOffsets: the interpreter's own
 * description of its layout, at the very start of _PyRuntime.  Owns
 * validating the block (cookie, version) and turning it into a py_layout.
 * Pure: works on bytes already copied out of the target; never prints.
 */
#ifndef PYROMETER_DEBUG_OFFSETS_H
#define PYROMETER_DEBUG_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "layout.h"

/* Bytes of _PyRuntime to copy for debug_offsets_parse. */
#define DEBUG_OFFSETS_MAX_SIZE 1024

/* Fill *out from `block` (len bytes from the start of _PyRuntime) of a
 * target whose PY_VERSION_HEX is expected to be `version_hex`.  Fails with
 * PM_EUNSUPPORTED if the cookie is wrong, the version differs, it is a
 * free-threaded build, or an offset is out of range. */
int debug_offsets_parse(const uint8_t *block, size_t len, uint64_t version_hex,
                        struct py_layout *out, struct pm_error *err);

#endif
