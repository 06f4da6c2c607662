/*
 * pydict.c — dict entries and instance attributes of a target's objects.
 *
 * A dict is a PyDictObject {ma_used, ma_keys, ma_values} over a key table
 * (PyDictKeysObject): a header, an index table, then dk_nentries entries in
 * insertion order.  3.8–3.10: dk_size slots of 1/2/4/8-byte indices and
 * {hash, key, value} entries.  3.11+: 1 << dk_log2_index_bytes bytes of
 * indices, then {hash, key, value} entries (DICT_KEYS_GENERAL) or {key,
 * value} (unicode and split keys).  A split table keeps values apart, in
 * ma_values (an array of pointers; 3.11+ a PyDictValues), indexed like the
 * entries.  We never use the index table: entries are walked in order.
 *
 * Invariants: every header field that sizes a read is range-checked first;
 * at most PY_DICT_MAX_ENTRIES entries are looked at, read in small chunks.
 * Never prints.
 */
#include "pydict.h"

#include <string.h>

#define CHUNK_ENTRIES 64u
#define DICT_USED_MAX (1ull << 40)

enum { KEYS_GENERAL = 0, KEYS_UNICODE = 1, KEYS_SPLIT = 2 };

struct keys_info {
    uint64_t nentries;
    uint64_t entries;          /* address of entry 0 */
    size_t entry_size;
    size_t key_off, value_off; /* within an entry */
};

static uint64_t get_u64(const uint8_t *block, int64_t off)
{
    uint64_t v;
    memcpy(&v, block + off, sizeof v);
    return v;
}

static int torn(struct pm_error *err, const char *what, uint64_t addr)
{
    return pm_fail(err, PM_ETORN, "implausible %s at 0x%llx", what, (unsigned long long)addr);
}

static int read_keys(struct py_objctx *ctx, uint64_t keys, struct keys_info *ki,
                     struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    uint8_t header[64];
    size_t header_len = (size_t)l->keys_indices;
    if (header_len > sizeof header || header_len < 16)
        return pm_fail(err, PM_EINTERNAL, "unexpected dict keys layout");
    if (keys == 0 || reader_read(ctx->reader, keys, header, header_len, err) != 0)
        return keys == 0 ? torn(err, "dict keys", keys) : -1;
    uint64_t slots, index_bytes;
    ki->nentries = get_u64(header, l->keys_nentries);
    if (l->keys_size != PY_OFF_NONE) {
        /* 3.8–3.10: dk_size, index width from the size */
        slots = get_u64(header, l->keys_size);
        if (slots < 8 || slots > (1ull << 32) || (slots & (slots - 1)) != 0)
            return torn(err, "dict keys", keys);
        size_t width = slots <= 0xff ? 1 : slots <= 0xffff ? 2 : slots <= 0xffffffffull ? 4 : 8;
        index_bytes = slots * width;
        ki->entry_size = (size_t)l->entry_size;
        ki->key_off = 8;
    } else {
        unsigned log2_size = header[l->keys_log2_size];
        unsigned log2_index_bytes = header[l->keys_log2_index_bytes];
        unsigned kind = header[l->keys_kind];
        if (log2_size > 32 || log2_index_bytes < log2_size || log2_index_bytes > log2_size + 3 ||
            kind > KEYS_SPLIT)
            return torn(err, "dict keys", keys);
        slots = 1ull << log2_size;
        index_bytes = 1ull << log2_index_bytes;
        ki->entry_size = (size_t)(kind == KEYS_GENERAL ? l->entry_size : l->unicode_entry_size);
        ki->key_off = kind == KEYS_GENERAL ? 8 : 0;
    }
    if (ki->nentries > slots)
        return torn(err, "dict keys", keys);
    ki->value_off = ki->key_off + 8;
    ki->entries = keys + (uint64_t)l->keys_indices + index_bytes;
    return 0;
}

/* Entries [first, first+n) of a table: key and value-in-entry pointers. */
static int read_entries(struct py_objctx *ctx, const struct keys_info *ki, uint64_t first,
                        size_t n, uint64_t *keys, uint64_t *values, struct pm_error *err)
{
    uint8_t buf[CHUNK_ENTRIES * 24];
    if (n > CHUNK_ENTRIES || ki->entry_size > 24 || ki->entry_size < 16)
        return pm_fail(err, PM_EINTERNAL, "bad entry chunk");
    if (reader_read(ctx->reader, ki->entries + first * ki->entry_size, buf, n * ki->entry_size,
                    err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        keys[i] = get_u64(buf + i * ki->entry_size, (int64_t)ki->key_off);
        values[i] = get_u64(buf + i * ki->entry_size, (int64_t)ki->value_off);
    }
    return 0;
}

/* Where the value pointers of a split table (ma_values / PyDictValues)
 * start, and how many it holds at most. */
static int split_values(struct py_objctx *ctx, uint64_t values, uint64_t *base, uint64_t *cap,
                        struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *base = values + (uint64_t)(l->values_items != PY_OFF_NONE ? l->values_items : 0);
    *cap = PY_DICT_MAX_ENTRIES;
    if (l->values_valid != PY_OFF_NONE) {
        /* 3.13: uint8_t capacity is the first field */
        uint8_t capacity;
        if (reader_read(ctx->reader, values, &capacity, 1, err) != 0)
            return -1;
        *cap = capacity;
    }
    return 0;
}

int py_dict_items(struct py_objctx *ctx, uint64_t dict, struct py_dict_item *out, size_t cap,
                  size_t *count, uint64_t *used, struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *count = 0;
    *used = 0;
    uint8_t header[64];
    size_t header_len = (size_t)l->dict_values + 8;
    if (header_len > sizeof header)
        return pm_fail(err, PM_EINTERNAL, "unexpected dict layout");
    if (reader_read(ctx->reader, dict, header, header_len, err) != 0)
        return -1;
    uint64_t ma_used = get_u64(header, l->dict_used);
    uint64_t keys = get_u64(header, l->dict_keys), values = get_u64(header, l->dict_values);
    if (ma_used > DICT_USED_MAX)
        return torn(err, "dict", dict);
    *used = ma_used;
    struct keys_info ki;
    if (read_keys(ctx, keys, &ki, err) != 0)
        return -1;
    uint64_t values_base = 0, values_cap = 0;
    if (values != 0 && split_values(ctx, values, &values_base, &values_cap, err) != 0)
        return -1;
    uint64_t limit = ki.nentries < PY_DICT_MAX_ENTRIES ? ki.nentries : PY_DICT_MAX_ENTRIES;
    if (values != 0 && limit > values_cap)
        limit = values_cap;
    for (uint64_t first = 0; first < limit && *count < cap; first += CHUNK_ENTRIES) {
        size_t n = limit - first < CHUNK_ENTRIES ? (size_t)(limit - first) : CHUNK_ENTRIES;
        uint64_t k[CHUNK_ENTRIES], v[CHUNK_ENTRIES];
        if (read_entries(ctx, &ki, first, n, k, v, err) != 0)
            return -1;
        if (values != 0 &&
            reader_read(ctx->reader, values_base + first * 8, v, n * 8, err) != 0)
            return -1;
        for (size_t i = 0; i < n && *count < cap; i++) {
            if (k[i] == 0 || v[i] == 0)
                continue;       /* a deleted entry */
            out[*count].key = k[i];
            out[*count].value = v[i];
            (*count)++;
        }
    }
    return 0;
}

/* Index of the str key `key` among a table's entries, -1 when absent. */
static int find_key(struct py_objctx *ctx, const struct keys_info *ki, const char *key,
                    int64_t *index, struct pm_error *err)
{
    *index = -1;
    uint64_t limit = ki->nentries < PY_DICT_MAX_ENTRIES ? ki->nentries : PY_DICT_MAX_ENTRIES;
    for (uint64_t first = 0; first < limit; first += CHUNK_ENTRIES) {
        size_t n = limit - first < CHUNK_ENTRIES ? (size_t)(limit - first) : CHUNK_ENTRIES;
        uint64_t k[CHUNK_ENTRIES], v[CHUNK_ENTRIES];
        if (read_entries(ctx, ki, first, n, k, v, err) != 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            int equal = 0;
            if (k[i] == 0)
                continue;
            /* a key we cannot read is not the one we want */
            if (py_str_equals(ctx, k[i], key, &equal, NULL) == 0 && equal) {
                *index = (int64_t)(first + i);
                return 0;
            }
        }
    }
    return 0;
}

int py_dict_get_str(struct py_objctx *ctx, uint64_t dict, const char *key, uint64_t *value,
                    struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *value = 0;
    enum py_kind kind;
    uint64_t type;
    if (py_object_kind(ctx, dict, &kind, &type, err) != 0)
        return -1;
    if (kind != PY_KIND_DICT)
        return pm_fail(err, PM_ETORN, "object at 0x%llx is not a dict", (unsigned long long)dict);
    uint8_t header[64];
    size_t header_len = (size_t)l->dict_values + 8;
    if (header_len > sizeof header)
        return pm_fail(err, PM_EINTERNAL, "unexpected dict layout");
    if (reader_read(ctx->reader, dict, header, header_len, err) != 0)
        return -1;
    uint64_t keys = get_u64(header, l->dict_keys), values = get_u64(header, l->dict_values);
    struct keys_info ki;
    int64_t index;
    if (read_keys(ctx, keys, &ki, err) != 0 || find_key(ctx, &ki, key, &index, err) != 0)
        return -1;
    if (index < 0)
        return 0;
    if (values != 0) {
        uint64_t base, cap;
        if (split_values(ctx, values, &base, &cap, err) != 0)
            return -1;
        if ((uint64_t)index >= cap)
            return 0;
        return reader_u64(ctx->reader, base + (uint64_t)index * 8, value, err);
    }
    return reader_u64(ctx->reader, ki.entries + (uint64_t)index * ki.entry_size + ki.value_off,
                      value, err);
}

/* An attribute kept in inline / managed values, named by the type's shared keys. */
static int values_attr(struct py_objctx *ctx, uint64_t type, uint64_t values, const char *name,
                       uint64_t *value, struct pm_error *err)
{
    uint64_t keys, base, cap;
    struct keys_info ki;
    int64_t index;
    if (reader_u64(ctx->reader, type + (uint64_t)ctx->layout->heaptype_cached_keys, &keys, err) != 0)
        return -1;
    if (keys == 0)
        return 0;
    if (read_keys(ctx, keys, &ki, err) != 0 || find_key(ctx, &ki, name, &index, err) != 0 ||
        split_values(ctx, values, &base, &cap, err) != 0)
        return -1;
    if (index < 0 || (uint64_t)index >= cap)
        return 0;
    return reader_u64(ctx->reader, base + (uint64_t)index * 8, value, err);
}

int py_object_attr(struct py_objctx *ctx, uint64_t obj, const char *name, uint64_t *value,
                   struct pm_error *err)
{
    const struct py_objlayout *l = ctx->layout;
    *value = 0;
    uint64_t type, flags, dict = 0, values = 0;
    int64_t dictoffset;
    if (reader_u64(ctx->reader, obj + (uint64_t)l->ob_type, &type, err) != 0 ||
        reader_u64(ctx->reader, type + (uint64_t)l->type_flags, &flags, err) != 0 ||
        reader_u64(ctx->reader, type + (uint64_t)l->type_dictoffset, (uint64_t *)&dictoffset,
                   err) != 0)
        return -1;
    int managed = l->flag_managed_dict != PY_OFF_NONE && (flags & (uint64_t)l->flag_managed_dict);
    if (managed) {
        uint64_t word;
        if (reader_u64(ctx->reader, obj + (uint64_t)l->managed_dict_offset, &word, err) != 0)
            return -1;
        switch (l->managed_kind) {
        case PY_MANAGED_311:
            dict = word;
            if (dict == 0 &&
                reader_u64(ctx->reader, obj + (uint64_t)l->managed_values_offset, &values, err) != 0)
                return -1;
            break;
        case PY_MANAGED_312:
            /* PyDictOrValues: a values pointer is stored minus one (odd) */
            if (word & 1)
                values = word + 1;
            else
                dict = word;
            break;
        case PY_MANAGED_313:
            dict = word;
            if (dict == 0 && l->flag_inline_values != PY_OFF_NONE &&
                (flags & (uint64_t)l->flag_inline_values)) {
                uint8_t valid;
                uint64_t inline_values = obj + (uint64_t)l->inline_values_offset;
                if (reader_read(ctx->reader, inline_values + (uint64_t)l->values_valid, &valid, 1,
                                err) != 0)
                    return -1;
                if (valid)
                    values = inline_values;
            }
            break;
        default:
            return 0;
        }
    } else if (dictoffset > 0 && dictoffset < (1 << 20)) {
        if (reader_u64(ctx->reader, obj + (uint64_t)dictoffset, &dict, err) != 0)
            return -1;
    }
    if (dict != 0)
        return py_dict_get_str(ctx, dict, name, value, err);
    if (values != 0)
        return values_attr(ctx, type, values, name, value, err);
    return 0;
}
