/*
 * fingerprint.c — SQL normalisation and fingerprint hashes (see
 * fingerprint.h for the rules).
 *
 * Two passes.  The first walks the text once as a tiny SQL lexer: comments
 * and whitespace become one pending space, literals and placeholders become
 * `?` (a unary minus before a number goes with it), quoted identifiers are
 * copied untouched.  Its output is never longer than its input.  The second
 * turns every parenthesised group holding only `?`, commas and spaces into
 * `(...)` and drops a `(...)` that repeats the one before it after a comma.
 * Must never read past `len`, never write past `cap`, never allocate more
 * than one scratch buffer; any bytes at all are valid input.
 */
#include "fingerprint.h"

#include <stdlib.h>
#include <string.h>

struct out_buf {
    char *p;
    size_t n, cap;   /* cap counts the NUL */
};

static void put(struct out_buf *o, char c)
{
    if (o->n + 1 < o->cap)
        o->p[o->n++] = c;
}

static void put_span(struct out_buf *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        put(o, s[i]);
}

static int is_word_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_word_char(unsigned char c)
{
    return is_word_start(c) || is_digit(c) || c == '$';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_space(unsigned char c)
{
    return c <= ' ' || c == 0x7f;
}

/* Characters after which a '-' directly before a number is a sign. */
static int is_operator_before_sign(char c)
{
    return c && strchr("(,=<>+-*/%|&^~!", c) != NULL;
}

/* The output so far ends in an operand (a word, a value, a quoted name)
 * with no space before what comes next: `a:b` is not a `:name` parameter. */
static int follows_operand(const struct out_buf *o, int space)
{
    if (space || o->n == 0)
        return 0;
    unsigned char last = (unsigned char)o->p[o->n - 1];
    return is_word_char(last) || last == '?' || last == '"' || last == '`' || last == ')' ||
           last == ']';
}

/* Emit the pending space (if any, and not at the start). */
static void flush_space(struct out_buf *o, int *space)
{
    if (*space && o->n > 0)
        put(o, ' ');
    *space = 0;
}

/* Emit `?` for a value; a '-' written just before it is folded in when it
 * is a sign (follows an operator, '(' or ',' or starts the text). */
static void put_value(struct out_buf *o, int *space)
{
    if (!*space && o->n > 0 && o->p[o->n - 1] == '-') {
        size_t k = o->n - 1;
        char before = 0;
        if (k > 0)
            before = o->p[k - 1] == ' ' && k > 1 ? o->p[k - 2] : o->p[k - 1];
        if (k == 0 || is_operator_before_sign(before))
            o->n = k;
    }
    flush_space(o, space);
    put(o, '?');
}

/* End of a '...' literal starting at i (the opening quote); backslashes
 * escape with E'...'.  Returns the index after the closing quote (or len). */
static size_t skip_string(const char *s, size_t len, size_t i, int backslash)
{
    for (i++; i < len; i++) {
        if (backslash && s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '\'') {
            if (i + 1 < len && s[i + 1] == '\'') {
                i++;
                continue;
            }
            return i + 1;
        }
    }
    return len;
}

/* End of a quoted identifier ("..." or `...`, doubled quote escapes). */
static size_t skip_quoted(const char *s, size_t len, size_t i)
{
    char q = s[i];
    for (i++; i < len; i++) {
        if (s[i] == q) {
            if (i + 1 < len && s[i + 1] == q) {
                i++;
                continue;
            }
            return i + 1;
        }
    }
    return len;
}

/* A number at i (digit, or '.' then digit): returns its end, or 0 when it
 * runs into word characters (then it is not a number: `1abc`). */
static size_t scan_number(const char *s, size_t len, size_t i)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[i] == '0' && i + 2 < len && (u[i + 1] == 'x' || u[i + 1] == 'X') && is_hex(u[i + 2])) {
        i += 2;
        while (i < len && is_hex(u[i]))
            i++;
    } else {
        while (i < len && is_digit(u[i]))
            i++;
        if (i < len && u[i] == '.') {
            i++;
            while (i < len && is_digit(u[i]))
                i++;
        }
        if (i + 1 < len && (u[i] == 'e' || u[i] == 'E') &&
            (is_digit(u[i + 1]) ||
             ((u[i + 1] == '+' || u[i + 1] == '-') && i + 2 < len && is_digit(u[i + 2])))) {
            i += 2;
            while (i < len && is_digit(u[i]))
                i++;
        }
    }
    if (i < len && is_word_char(u[i]))
        return 0;
    return i;
}

/* A $tag$ opener at i: returns the tag length + 2 (the whole opener), or 0. */
static size_t dollar_opener(const char *s, size_t len, size_t i)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t j = i + 1;
    if (j < len && is_word_start(u[j]))
        while (j < len && (is_word_start(u[j]) || is_digit(u[j])))
            j++;
    return j < len && u[j] == '$' ? j + 1 - i : 0;
}

/* End of a dollar-quoted string whose opener (length olen) starts at i. */
static size_t skip_dollar(const char *s, size_t len, size_t i, size_t olen)
{
    for (size_t j = i + olen; j + olen <= len; j++)
        if (s[j] == '$' && memcmp(s + j, s + i, olen) == 0)
            return j + olen;
    return len;
}

/* Pass 1: lex, replacing values by `?`.  Output never longer than input. */
static void lex_pass(const char *s, size_t len, struct out_buf *o)
{
    const unsigned char *u = (const unsigned char *)s;
    int space = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (is_space(c)) {
            space = 1;
            i++;
        } else if (c == '-' && i + 1 < len && u[i + 1] == '-') {
            while (i < len && u[i] != '\n')
                i++;
            space = 1;
        } else if (c == '/' && i + 1 < len && u[i + 1] == '*') {
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < len; j++)
                if (u[j] == '*' && u[j + 1] == '/') {
                    end = s + j;
                    break;
                }
            i = end ? (size_t)(end - s) + 2 : len;
            space = 1;
        } else if (c == '\'') {
            i = skip_string(s, len, i, 0);
            put_value(o, &space);
        } else if (c == '"' || c == '`') {
            size_t end = skip_quoted(s, len, i);
            flush_space(o, &space);
            put_span(o, s + i, end - i);
            i = end;
        } else if (is_digit(c) || (c == '.' && i + 1 < len && is_digit(u[i + 1]) &&
                                   !follows_operand(o, space))) {
            size_t end = scan_number(s, len, i);
            if (end) {
                put_value(o, &space);
                i = end;
            } else {   /* `1abc`: a word after all */
                size_t j = i;
                while (j < len && (is_word_char(u[j]) || u[j] == '.'))
                    j++;
                flush_space(o, &space);
                put_span(o, s + i, j - i);
                i = j;
            }
        } else if (is_word_start(c)) {
            size_t j = i;
            while (j < len && is_word_char(u[j]))
                j++;
            /* E'..', N'..', X'..', B'..': a prefixed string literal. */
            if (j == i + 1 && j < len && u[j] == '\'' && strchr("eEnNxXbB", c)) {
                i = skip_string(s, len, j, c == 'e' || c == 'E');
                put_value(o, &space);
                continue;
            }
            flush_space(o, &space);
            put_span(o, s + i, j - i);
            i = j;
        } else if (c == '$') {
            size_t j = i + 1, olen;
            if (j < len && is_digit(u[j])) {            /* $1 */
                while (j < len && is_digit(u[j]))
                    j++;
                put_value(o, &space);
                i = j;
            } else if ((olen = dollar_opener(s, len, i)) != 0) {   /* $tag$...$tag$ */
                i = skip_dollar(s, len, i, olen);
                put_value(o, &space);
            } else {
                flush_space(o, &space);
                put(o, '$');
                i++;
            }
        } else if (c == '%' && i + 1 < len && u[i + 1] == 's') {      /* %s */
            put_value(o, &space);
            i += 2;
        } else if (c == '%' && i + 1 < len && u[i + 1] == '(') {      /* %(name)s */
            size_t j = i + 2;
            while (j < len && (is_word_start(u[j]) || is_digit(u[j])) && j - i < 256)
                j++;
            if (j + 1 < len && u[j] == ')' && u[j + 1] == 's') {
                put_value(o, &space);
                i = j + 2;
            } else {
                flush_space(o, &space);
                put(o, '%');
                i++;
            }
        } else if (c == '%' && i + 1 < len && u[i + 1] == '%') {
            flush_space(o, &space);
            put_span(o, "%%", 2);
            i += 2;
        } else if (c == '?') {                                       /* ?, ?NNN */
            size_t j = i + 1;
            while (j < len && is_digit(u[j]))
                j++;
            /* `?1abc`, `?1.x`: what follows is a word or a number of its own */
            i = j < len && (is_word_char(u[j]) || u[j] == '.') ? i + 1 : j;
            put_value(o, &space);
        } else if (c == ':' && i + 1 < len && u[i + 1] == ':') {      /* ::type */
            flush_space(o, &space);
            put_span(o, "::", 2);
            i += 2;
        } else if (c == ':' && i + 1 < len && is_word_start(u[i + 1]) &&
                   !follows_operand(o, space)) {                      /* :name */
            i++;
            while (i < len && is_word_char(u[i]))
                i++;
            put_value(o, &space);
        } else {
            flush_space(o, &space);
            put(o, (char)c);
            i++;
        }
    }
}

/* If a[i] opens a group of only `?`, commas and spaces (or is already
 * `(...)`), return the index after its ')'; else 0. */
static size_t value_group_end(const char *a, size_t n, size_t i)
{
    if (n - i >= 5 && memcmp(a + i, "(...)", 5) == 0)
        return i + 5;
    size_t j = i + 1, values = 0;
    while (j < n && (a[j] == '?' || a[j] == ',' || a[j] == ' ')) {
        values += a[j] == '?';
        j++;
    }
    return j < n && a[j] == ')' && values > 0 ? j + 1 : 0;
}

/* Pass 2: value groups to `(...)`, a repeated group after a comma dropped. */
static void group_pass(const char *a, size_t n, struct out_buf *o)
{
    size_t last_group_end = (size_t)-1;
    size_t i = 0;
    while (i < n) {
        char c = a[i];
        if (c == '"' || c == '`') {
            size_t end = skip_quoted(a, n, i);
            put_span(o, a + i, end - i);
            i = end;
            continue;
        }
        size_t end;
        if (c == '(' && (end = value_group_end(a, n, i)) != 0) {
            int repeat = 0;
            if (last_group_end != (size_t)-1 && last_group_end <= o->n) {
                const char *sep = o->p + last_group_end;
                size_t len = o->n - last_group_end;
                repeat = (len == 1 && sep[0] == ',') ||
                         (len == 2 && ((sep[0] == ',' && sep[1] == ' ') ||
                                       (sep[0] == ' ' && sep[1] == ','))) ||
                         (len == 3 && memcmp(sep, " , ", 3) == 0);
            }
            if (repeat) {
                o->n = last_group_end;
            } else {
                put_span(o, "(...)", 5);
                last_group_end = o->n;
            }
            i = end;
            continue;
        }
        put(o, c);
        i++;
    }
}

size_t sql_normalize(const char *sql, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    char stack_buf[2048];
    char *scratch = len + 1 <= sizeof stack_buf ? stack_buf : malloc(len + 1);
    struct out_buf o = {out, 0, cap};
    if (scratch == NULL) {   /* no memory: one pass only (still a fingerprint) */
        lex_pass(sql, len, &o);
        out[o.n] = '\0';
        return o.n;
    }
    struct out_buf lexed = {scratch, 0, len + 1};
    lex_pass(sql, len, &lexed);
    group_pass(scratch, lexed.n, &o);
    out[o.n] = '\0';
    if (scratch != stack_buf)
        free(scratch);
    return o.n;
}

uint64_t sql_fingerprint_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (quote) {
            if (c == (unsigned char)quote)
                quote = 0;
        } else if (c == '"' || c == '`') {
            quote = (char)c;
        } else if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
        }
        h ^= c;
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

uint64_t sql_fingerprint(const char *sql, size_t len, char *out, size_t cap, size_t *out_len)
{
    size_t n = sql_normalize(sql, len, out, cap);
    if (out_len)
        *out_len = n;
    return sql_fingerprint_hash(out, n);
}
