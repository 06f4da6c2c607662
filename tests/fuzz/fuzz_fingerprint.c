/*
 * fuzz_fingerprint.c — libFuzzer harness for the agent's SQL normalisation
 * (src/agent/fingerprint.c), which runs on every query an application makes.
 * Input: byte 0 picks the output capacity (0: the never-truncating one,
 * else 1..255), the rest is the SQL, as an exact-size heap copy so ASan sees
 * any read past it.  Checks: the result fits and is NUL-terminated at the
 * returned length; with the full capacity, normalising the result again
 * gives it back unchanged and hashes the same; the hash is never 0.
 * Seeds: tests/fuzz/corpus/fuzz_fingerprint.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/fingerprint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t len = size - 1;
    char *sql = malloc(len ? len : 1);
    if (sql == NULL)
        return 0;
    memcpy(sql, data + 1, len);
    size_t cap = data[0] ? data[0] : SQL_NORMALIZED_CAP(len);
    char *out = malloc(cap);
    size_t n;
    uint64_t h = sql_fingerprint(sql, len, out, cap, &n);
    if (n >= cap || out[n] != '\0' || h == 0)
        abort();
    if (data[0] == 0) {
        char *again = malloc(SQL_NORMALIZED_CAP(n));
        size_t m;
        uint64_t h2 = sql_fingerprint(out, n, again, SQL_NORMALIZED_CAP(n), &m);
        if (m != n || memcmp(again, out, n) != 0 || h2 != h)
            abort();
        free(again);
    }
    free(out);
    free(sql);
    return 0;
}
