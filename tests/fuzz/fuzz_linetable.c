/*
 * fuzz_linetable.c — libFuzzer harness for linetable_line().  Input layout:
 * byte 0 picks the table kind (and now and then an invalid one), bytes 1–4
 * firstlineno and 5–8 a position (little-endian int32), the rest is the
 * table, which ends where libFuzzer's buffer ends, so ASan sees any read past
 * `len`.  Checks the contract: negative positions and empty tables give
 * firstlineno, and any other answer is -1 or a line >= 0.
 * Seeds: tests/fuzz/corpus/fuzz_linetable (gen_linetable_cases.py --corpus).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "python/linetable.h"

#define HEADER_SIZE 9
#define POSITIONS_WALKED 64

static int32_t read_le32(const uint8_t *bytes)
{
    uint32_t value = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 |
                     (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24;
    int32_t result;

    memcpy(&result, &value, sizeof result);
    return result;
}

static enum py_linetable_kind pick_kind(uint8_t byte)
{
    if (byte == 0xFF)
        return (enum py_linetable_kind)0;
    return (enum py_linetable_kind)(PY_LINES_LNOTAB + byte % 4);
}

static void check_line(enum py_linetable_kind kind, const uint8_t *table, size_t len,
                       int firstlineno, int64_t pos)
{
    int line = linetable_line(kind, table, len, firstlineno, pos);

    if (pos < 0 || len == 0) {
        if (line != firstlineno)
            __builtin_trap();
    } else if (line < -1) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum py_linetable_kind kind;
    int firstlineno;
    int64_t pos, walk;
    const uint8_t *table;
    size_t len;

    if (size < HEADER_SIZE)
        return 0;
    kind = pick_kind(data[0]);
    firstlineno = read_le32(data + 1);
    pos = read_le32(data + 5);
    table = data + HEADER_SIZE;
    len = size - HEADER_SIZE;
    check_line(kind, table, len, firstlineno, pos);
    check_line(kind, table, len, firstlineno, INT64_MAX);
    check_line(kind, table, len, firstlineno, INT64_MIN);
    for (walk = 0; walk < POSITIONS_WALKED; walk++)
        check_line(kind, table, len, firstlineno, walk);
    return 0;
}
