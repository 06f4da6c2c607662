/*
 * fingerprint.h — SQL fingerprints: the text of a query with its values
 * taken out, and a 64-bit hash of that text.
 *
 * Owns: normalising SQL so that queries differing only in their values look
 * the same (string, number and dollar-quoted literals and every placeholder
 * style become `?`; a parenthesised list of values becomes `(...)`, repeated
 * ones `(...), (...)` a single `(...)`, which covers IN-lists and multi-row
 * VALUES; comments dropped; whitespace runs become one space) and hashing it.
 * Pure C: no Python, no allocation beyond one scratch buffer for long text,
 * safe on any bytes (fuzzed by tests/fuzz/fuzz_fingerprint.c).  Used by the
 * in-process agent on every query, so it is one pass plus one small one.
 */
#ifndef PYROMETER_AGENT_FINGERPRINT_H
#define PYROMETER_AGENT_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

/* Capacity of an output buffer that never truncates `len` bytes of SQL. */
#define SQL_NORMALIZED_CAP(len) (2 * (size_t)(len) + 16)

/* Normalise sql[0..len) into out (capacity cap > 0, always NUL-terminated).
 * Returns the length written; with cap >= SQL_NORMALIZED_CAP(len) nothing is
 * ever cut.  Normalising normalised text gives the same text back. */
size_t sql_normalize(const char *sql, size_t len, char *out, size_t cap);

/* FNV-1a over normalised text, letters outside quoted identifiers folded to
 * lower case (so `SELECT` and `select` agree); never returns 0. */
uint64_t sql_fingerprint_hash(const char *normalized, size_t len);

/* Both: normalise into out and return the hash of what was written. */
uint64_t sql_fingerprint(const char *sql, size_t len, char *out, size_t cap, size_t *out_len);

#endif
