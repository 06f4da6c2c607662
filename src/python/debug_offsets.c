/*
 * debug_offsets.c — reading CPython 3.13's _Py_DebugOffsets.
 *
 * The block (Include/internal/pycore_runtime.h in 3.13) is a cookie
 * "xdebugpy", PY_VERSION_HEX, a free-threaded flag, then groups of uint64
 * offsets, each group led by the size of the struct it describes.  We read it
 * as an array of uint64 words by index, following 3.13's declaration order,
 * and check every offset against its struct's size before trusting it.
 * Pure; never prints.
 */
#include "debug_offsets.h"

#include <string.h>

/* Word indexes in 3.13's _Py_DebugOffsets (cookie is word 0). */
enum {
    W_VERSION = 1,
    W_FREE_THREADED,
    W_RT_SIZE, W_RT_FINALIZING, W_RT_INTERPRETERS_HEAD,
    W_IS_SIZE, W_IS_ID, W_IS_NEXT, W_IS_THREADS_HEAD, W_IS_GC, W_IS_MODULES, W_IS_SYSDICT,
    W_IS_BUILTINS, W_IS_CEVAL_GIL, W_IS_GIL_STATE, W_IS_GIL_ENABLED, W_IS_GIL_LOCKED,
    W_IS_GIL_HOLDER,
    W_TS_SIZE, W_TS_PREV, W_TS_NEXT, W_TS_INTERP, W_TS_CURRENT_FRAME, W_TS_THREAD_ID,
    W_TS_NATIVE_THREAD_ID, W_TS_DATASTACK_CHUNK, W_TS_STATUS,
    W_IF_SIZE, W_IF_PREVIOUS, W_IF_EXECUTABLE, W_IF_INSTR_PTR, W_IF_LOCALSPLUS, W_IF_OWNER,
    W_CO_SIZE, W_CO_FILENAME, W_CO_NAME, W_CO_QUALNAME, W_CO_LINETABLE, W_CO_FIRSTLINENO,
    W_CO_ARGCOUNT, W_CO_LOCALSPLUSNAMES, W_CO_LOCALSPLUSKINDS, W_CO_CODE_ADAPTIVE,
    W_OB_SIZE, W_OB_TYPE,
    W_TY_SIZE, W_TY_NAME, W_TY_REPR, W_TY_FLAGS,
    W_TU_SIZE, W_TU_ITEM, W_TU_OB_SIZE,
    W_LI_SIZE, W_LI_ITEM, W_LI_OB_SIZE,
    W_DI_SIZE, W_DI_KEYS, W_DI_VALUES,
    W_FL_SIZE, W_FL_FVAL,
    W_LO_SIZE, W_LO_TAG, W_LO_DIGIT,
    W_BY_SIZE, W_BY_OB_SIZE, W_BY_SVAL,
    W_UN_SIZE, W_UN_STATE, W_UN_LENGTH, W_UN_ASCII_SIZE,
    W_GC_SIZE, W_GC_COLLECTING,
    W_COUNT
};

static uint64_t word(const uint8_t *block, int i)
{
    uint64_t v;
    memcpy(&v, block + (size_t)i * 8, 8);
    return v;
}

/* An offset inside a struct of `size` bytes (room for an 8-byte field). */
static int field_ok(uint64_t off, uint64_t size)
{
    return size > 0 && size < (1u << 20) && off < size;
}

int debug_offsets_parse(const uint8_t *block, size_t len, uint64_t version_hex,
                        struct py_layout *out, struct pm_error *err)
{
    if (len < (size_t)W_COUNT * 8)
        return pm_fail(err, PM_EUNSUPPORTED, "debug offsets block too short");
    if (memcmp(block, "xdebugpy", 8) != 0)
        return pm_fail(err, PM_EUNSUPPORTED,
                       "_PyRuntime does not start with the \"xdebugpy\" debug-offsets cookie");
    uint64_t v = word(block, W_VERSION);
    if ((v >> 16) != (version_hex >> 16))
        return pm_fail(err, PM_EUNSUPPORTED,
                       "debug offsets are for version 0x%llx, the library says 0x%llx",
                       (unsigned long long)v, (unsigned long long)version_hex);
    if (((v >> 16) & 0xff) != 13 || (v >> 24) != 3)
        return pm_fail(err, PM_EUNSUPPORTED, "debug offsets of version 0x%llx are not known",
                       (unsigned long long)v);
    if (word(block, W_FREE_THREADED) != 0)
        return pm_fail(err, PM_EUNSUPPORTED, "free-threaded CPython builds are not supported yet");

    struct {
        int size_word, first, last;
    } groups[] = {
        {W_RT_SIZE, W_RT_FINALIZING, W_RT_INTERPRETERS_HEAD},
        {W_IS_SIZE, W_IS_ID, W_IS_GIL_HOLDER},
        {W_TS_SIZE, W_TS_PREV, W_TS_STATUS},
        {W_IF_SIZE, W_IF_PREVIOUS, W_IF_OWNER},
        {W_CO_SIZE, W_CO_FILENAME, W_CO_CODE_ADAPTIVE},
        {W_OB_SIZE, W_OB_TYPE, W_OB_TYPE},
        {W_TY_SIZE, W_TY_NAME, W_TY_FLAGS},
        {W_BY_SIZE, W_BY_OB_SIZE, W_BY_SVAL},
        {W_UN_SIZE, W_UN_STATE, W_UN_ASCII_SIZE},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        uint64_t size = word(block, groups[g].size_word);
        for (int i = groups[g].first; i <= groups[g].last; i++)
            if (!field_ok(word(block, i), size + (i == W_CO_CODE_ADAPTIVE || i == W_BY_SVAL ||
                                                   i == W_IF_LOCALSPLUS || i == W_UN_ASCII_SIZE)))
                return pm_fail(err, PM_EUNSUPPORTED,
                               "debug offset %d (%llu) is outside its struct (%llu bytes)", i,
                               (unsigned long long)word(block, i), (unsigned long long)size);
    }

    if (word(block, W_IS_GIL_LOCKED) < word(block, W_IS_GIL_STATE) ||
        word(block, W_IS_GIL_HOLDER) < word(block, W_IS_GIL_STATE))
        return pm_fail(err, PM_EUNSUPPORTED, "debug offsets: GIL fields outside the GIL state");

    memset(out, 0xff, sizeof *out); /* every offset PY_OFF_NONE (-1) */
    out->major = 3;
    out->minor = 13;
    out->lines = PY_LINES_LOCATIONS;
    out->frames = PY_FRAMES_DIRECT;

    out->runtime_size = (int64_t)word(block, W_RT_SIZE);
    out->runtime_finalizing = (int64_t)word(block, W_RT_FINALIZING);
    out->runtime_interpreters_head = (int64_t)word(block, W_RT_INTERPRETERS_HEAD);

    out->interp_size = (int64_t)word(block, W_IS_SIZE);
    out->interp_next = (int64_t)word(block, W_IS_NEXT);
    out->interp_threads_head = (int64_t)word(block, W_IS_THREADS_HEAD);
    out->interp_id = (int64_t)word(block, W_IS_ID);
    out->interp_modules = (int64_t)word(block, W_IS_MODULES);
    out->interp_gil_ptr = (int64_t)word(block, W_IS_CEVAL_GIL);
    out->gil_locked = (int64_t)(word(block, W_IS_GIL_LOCKED) - word(block, W_IS_GIL_STATE));
    out->gil_last_holder = (int64_t)(word(block, W_IS_GIL_HOLDER) - word(block, W_IS_GIL_STATE));

    out->tstate_size = (int64_t)word(block, W_TS_SIZE);
    out->tstate_prev = (int64_t)word(block, W_TS_PREV);
    out->tstate_next = (int64_t)word(block, W_TS_NEXT);
    out->tstate_interp = (int64_t)word(block, W_TS_INTERP);
    out->tstate_frame = (int64_t)word(block, W_TS_CURRENT_FRAME);
    out->tstate_thread_id = (int64_t)word(block, W_TS_THREAD_ID);
    out->tstate_native_thread_id = (int64_t)word(block, W_TS_NATIVE_THREAD_ID);

    out->iframe_size = (int64_t)word(block, W_IF_LOCALSPLUS);
    out->iframe_previous = (int64_t)word(block, W_IF_PREVIOUS);
    out->iframe_code = (int64_t)word(block, W_IF_EXECUTABLE);
    out->iframe_instr = (int64_t)word(block, W_IF_INSTR_PTR);
    out->iframe_owner = (int64_t)word(block, W_IF_OWNER);
    out->iframe_localsplus = (int64_t)word(block, W_IF_LOCALSPLUS);

    out->code_size = (int64_t)word(block, W_CO_CODE_ADAPTIVE);
    out->code_filename = (int64_t)word(block, W_CO_FILENAME);
    out->code_name = (int64_t)word(block, W_CO_NAME);
    out->code_qualname = (int64_t)word(block, W_CO_QUALNAME);
    out->code_firstlineno = (int64_t)word(block, W_CO_FIRSTLINENO);
    out->code_linetable = (int64_t)word(block, W_CO_LINETABLE);
    out->code_adaptive = (int64_t)word(block, W_CO_CODE_ADAPTIVE);
    out->code_argcount = (int64_t)word(block, W_CO_ARGCOUNT);
    out->code_varnames = (int64_t)word(block, W_CO_LOCALSPLUSNAMES);

    out->ob_type = (int64_t)word(block, W_OB_TYPE);
    out->ob_size = (int64_t)word(block, W_BY_OB_SIZE);
    out->type_name = (int64_t)word(block, W_TY_NAME);
    out->type_flags = (int64_t)word(block, W_TY_FLAGS);
    out->bytes_sval = (int64_t)word(block, W_BY_SVAL);
    out->unicode_length = (int64_t)word(block, W_UN_LENGTH);
    out->unicode_state = (int64_t)word(block, W_UN_STATE);
    out->unicode_ascii_size = (int64_t)word(block, W_UN_ASCII_SIZE);
    /* PyCompactUnicodeObject = PyASCIIObject + utf8_length + utf8 (3.12+) */
    out->unicode_compact_size = out->unicode_ascii_size + 16;
    /* _PyStackChunk is not described by the debug offsets; 3.13's
     * cpython/pystate.h declares {previous, size, top, data[]}, all words. */
    out->tstate_datastack_chunk = (int64_t)word(block, W_TS_DATASTACK_CHUNK);
    /* ... and PyThreadState declares datastack_top right after datastack_chunk */
    out->tstate_datastack_top = out->tstate_datastack_chunk + 8;
    out->chunk_previous = 0;
    out->chunk_size = 8;
    out->chunk_top = 16;
    out->chunk_data = 24;
    out->iframe_is_entry = PY_OFF_NONE;   /* 3.13 uses shim frames */
    return 0;
}
