/*
 * linetable.c — owns decoding CPython's line tables (co_lnotab of 2.7 and
 * 3.6–3.9, 3.10's co_linetable, the 3.11+ location table) into the line of
 * one bytecode position.
 *
 * Must never read memory of a target, allocate, print, or trust the table:
 * every byte read is checked against `len`, varints are bounded, and a line
 * that leaves the int range makes the table malformed.  The walks mirror
 * what the interpreter itself does for PyCode_Addr2Line in each version, so
 * that an answer here equals the interpreter's (tests/unit/test_linetable.c
 * checks this against tables and answers dumped from real interpreters).
 */
#include "linetable.h"

#include <limits.h>

/* Intermediate lines outside this range mean a malformed table (real line
 * numbers are ints; this also keeps the running sum far from overflow). */
#define LINE_LIMIT ((int64_t)INT_MAX)

/* Location-table entry codes (Objects/locations.md, 3.11+). */
#define LOC_ONE_LINE0   10
#define LOC_ONE_LINE2   12
#define LOC_NO_COLUMNS  13
#define LOC_LONG        14
#define LOC_NONE        15

/* A varint has 6 value bits per byte; 6 bytes cover any 32-bit value. */
#define VARINT_MAX_BYTES 6

/* 3.10 marks a range without a line with this line delta. */
#define LINETABLE310_NO_LINE (-128)

/* A computed line as the return value: -1 when it cannot be a line. */
static int line_result(int64_t line)
{
    return (line < 0 || line > LINE_LIMIT) ? -1 : (int)line;
}

static int line_in_range(int64_t line)
{
    return line >= -LINE_LIMIT && line <= LINE_LIMIT;
}

/* co_lnotab (2.7, 3.6–3.9): pairs (address delta, line delta); the line
 * of `pos` is the sum of line deltas of all pairs whose running address is
 * <= pos.  `signed_deltas` selects the 3.6+ reading of the line byte.  A
 * position past the last pair keeps the last line, as the interpreter does.
 * An odd trailing byte (half a pair) reached before `pos` is malformed. */
static int lnotab_line(const uint8_t *table, size_t len, int firstlineno,
                       int64_t pos, int signed_deltas)
{
    int64_t addr = 0;
    int64_t line = firstlineno;
    size_t at;

    for (at = 0; at + 1 < len; at += 2) {
        addr += table[at];
        if (addr > pos)
            return line_result(line);
        line += signed_deltas ? (int8_t)table[at + 1] : table[at + 1];
        if (!line_in_range(line))
            return -1;
    }
    if (at < len)
        return -1;
    return line_result(line);
}

/* co_linetable (3.10): pairs (unsigned byte-count of a range, signed line
 * delta or -128 for "no line"); ranges start at 0 and follow each other.
 * Zero-width ranges only move the line.  Past the last range: no line. */
static int linetable310_line(const uint8_t *table, size_t len, int firstlineno,
                             int64_t pos)
{
    int64_t start = 0;
    int64_t line = firstlineno;
    size_t at;

    for (at = 0; at + 1 < len; at += 2) {
        int64_t end = start + table[at];
        int delta = (int8_t)table[at + 1];

        if (delta != LINETABLE310_NO_LINE) {
            line += delta;
            if (!line_in_range(line))
                return -1;
        }
        if (pos < end)
            return delta == LINETABLE310_NO_LINE ? -1 : line_result(line);
        start = end;
    }
    return -1;
}

/* Read an unsigned varint (6 bits a byte, low chunk first, 0x40 = more)
 * starting at table[*at]; advances *at.  Returns 0 on success, -1 when it
 * runs past `len`, is too long, or meets an entry's first byte (bit 7). */
static int read_varint(const uint8_t *table, size_t len, size_t *at,
                       uint64_t *value)
{
    uint64_t result = 0;
    int shift = 0;
    int count;

    for (count = 0; count < VARINT_MAX_BYTES; count++) {
        uint8_t byte;

        if (*at >= len)
            return -1;
        byte = table[(*at)++];
        if (byte & 0x80)
            return -1;
        result |= (uint64_t)(byte & 0x3f) << shift;
        shift += 6;
        if (!(byte & 0x40)) {
            *value = result;
            return 0;
        }
    }
    return -1;
}

/* Signed varint: the low bit of the unsigned value is the sign. */
static int read_svarint(const uint8_t *table, size_t len, size_t *at,
                        int64_t *value)
{
    uint64_t raw;

    if (read_varint(table, len, at, &raw) < 0)
        return -1;
    *value = (raw & 1) ? -(int64_t)(raw >> 1) : (int64_t)(raw >> 1);
    return 0;
}

/* Line delta of the location entry whose first byte is table[at]: only the
 * no-column and long forms carry one (a signed varint right after the first
 * byte); one-line forms imply 0, 1 or 2; the others 0.  -1 if malformed. */
static int location_line_delta(const uint8_t *table, size_t len, size_t at,
                               int64_t *delta)
{
    int code = (table[at] >> 3) & 15;
    size_t next = at + 1;

    if (code == LOC_NO_COLUMNS || code == LOC_LONG)
        return read_svarint(table, len, &next, delta);
    if (code >= LOC_ONE_LINE0 && code <= LOC_ONE_LINE2)
        *delta = code - LOC_ONE_LINE0;
    else
        *delta = 0;
    return 0;
}

/* The 3.11+ location table: entries of a first byte 1CCCCLLL (code C,
 * L + 1 code units) and code-dependent bytes without bit 7.  The line moves
 * by each entry's delta; entries of code 15 have no line.  Past the last
 * entry: no line.  Entries are found as the interpreter finds them: the next
 * byte with bit 7 set. */
static int locations_line(const uint8_t *table, size_t len, int firstlineno,
                          int64_t pos)
{
    int64_t unit = 0;
    int64_t line = firstlineno;
    size_t at = 0;

    while (at < len) {
        int code = (table[at] >> 3) & 15;
        int64_t delta;

        if (!(table[at] & 0x80))
            return -1;
        if (location_line_delta(table, len, at, &delta) < 0)
            return -1;
        line += delta;
        if (!line_in_range(line))
            return -1;
        unit += (table[at] & 7) + 1;
        if (pos < unit)
            return code == LOC_NONE ? -1 : line_result(line);
        do
            at++;
        while (at < len && !(table[at] & 0x80));
    }
    return -1;
}

int linetable_line(enum py_linetable_kind kind, const uint8_t *table, size_t len,
                   int firstlineno, int64_t pos)
{
    if (pos < 0 || table == NULL || len == 0)
        return firstlineno;
    switch (kind) {
    case PY_LINES_LNOTAB:
        return lnotab_line(table, len, firstlineno, pos, 1);
    case PY_LINES_LNOTAB27:
        return lnotab_line(table, len, firstlineno, pos, 0);
    case PY_LINES_LINETABLE310:
        return linetable310_line(table, len, firstlineno, pos);
    case PY_LINES_LOCATIONS:
        return locations_line(table, len, firstlineno, pos);
    }
    return -1;
}
