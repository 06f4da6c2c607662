/*
 * fuzz_heap.c — libFuzzer harness: the heap census walking arbitrary "target
 * memory".  The input is a memory image placed at a fixed address; its first
 * byte picks a version (the generated 2.7 and 3.6–3.13 GC tables), the GC
 * list heads sit at fixed places in the image and everything they link to
 * (objects, type objects, names, 3.8+ type dicts and qualnames) points into
 * it, so the fuzzer can build lists, loops, torn links and types of any
 * shape.  The census must never crash, hang, or read outside what the
 * reader allows; whatever it counts must add up.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "python/heap.h"
#include "python/pyobj.h"
#include "target/reader.h"

#define BASE 0x10000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int versions[][2] = {{2, 7}, {3, 6}, {3, 7}, {3, 8}, {3, 9},
                                      {3, 10}, {3, 11}, {3, 12}, {3, 13}};
    if (size < 128)
        return 0;
    const int *v = versions[data[0] % (sizeof versions / sizeof versions[0])];
    const struct py_gclayout *gc = py_gclayout_for(v[0], v[1]);
    struct reader *r = reader_buffer_new(data, size, BASE);
    struct py_objctx objects, *objs = NULL;
    if (py_objctx_init(&objects, r, v[0], v[1], NULL) == 0)
        objs = &objects;
    uint64_t heads[3];
    for (size_t i = 0; i < 3; i++)
        heads[i] = BASE + 16 + i * (uint64_t)gc->generation_size;
    struct heap_source src = {.reader = r, .gc = gc, .objects = objs, .heads = heads,
                              .nheads = (data[1] % 3) + 1};
    struct heap_options opts = {.max_objects = 4096, .max_copy = 1 << 20, .tries = 1};
    struct heap_census c;
    if (heap_census_lists(&src, &opts, &c, NULL) == 0) {
        uint64_t count = 0, bytes = 0;
        for (size_t i = 0; i < c.ntypes; i++) {
            count += c.types[i].count;
            bytes += c.types[i].size;
            if (strlen(c.types[i].name) >= HEAP_NAME_MAX)
                __builtin_trap();
        }
        if (count + c.unreadable != c.objects || bytes != c.size)
            __builtin_trap();
        heap_census_free(&c);
    }
    reader_close(r);
    return 0;
}
