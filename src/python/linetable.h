/*
 * linetable.h — mapping a bytecode position to a source line, per CPython
 * line-table format.  Pure functions over bytes already copied out of the
 * target: they never read memory, never allocate, never print, and treat the
 * table as untrusted (every length bounded, no read past `len`).
 *
 * Formats (facts from CPython's Objects/lnotab_notes.txt and
 * Objects/locations.md of each version):
 *   - PY_LINES_LNOTAB (3.6–3.9): co_lnotab pairs (byte-offset delta,
 *     line delta as a signed byte).  Position is a byte offset into co_code
 *     (f_lasti as stored in 2.7–3.9).
 *   - PY_LINES_LNOTAB27 (2.7): the same pairs with an unsigned line delta
 *     (2.7 writes a jump of 128–255 lines as one byte, so the signed reading
 *     would be wrong).  Position is a byte offset.
 *   - PY_LINES_LINETABLE310 (3.10): co_linetable pairs (byte-offset delta
 *     unsigned, line delta signed, -128 = no line).  Position is a byte
 *     offset (3.10's f_lasti * 2).
 *   - PY_LINES_LOCATIONS (3.11+): the location table of
 *     Objects/locations.md; position is an index in code units (2 bytes).
 */
#ifndef PYROMETER_LINETABLE_H
#define PYROMETER_LINETABLE_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

/* Return the line number for bytecode position `pos` (unit: see above) in a
 * code object whose first line is `firstlineno`.  Returns `firstlineno` when
 * the table is empty, and -1 when the position has no line (3.10+ "no line"
 * entries) or the table is malformed before reaching `pos`.  A negative `pos`
 * (frame not started yet) returns firstlineno. */
int linetable_line(enum py_linetable_kind kind, const uint8_t *table, size_t len,
                   int firstlineno, int64_t pos);

#endif
