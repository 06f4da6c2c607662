/*
 * fuzz_walker.c — libFuzzer harness: the CPython model walking arbitrary
 * "target memory".  The input is a memory image placed at a fixed address;
 * its first byte picks a layout (3.8–3.12 generated tables).  Runtime, type
 * objects and everything else point into the image, so the fuzzer can build
 * thread lists, frame chains, code objects and strings of any shape.  The
 * walker must never crash, hang, or read outside what the reader allows.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "python/layout.h"
#include "python/process.h"
#include "target/reader.h"

#define BASE 0x10000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 64)
        return 0;
    const struct py_layout *layout = py_layout_for(3, 8 + data[0] % 5);
    struct reader *r = reader_buffer_new(data, size, BASE);
    struct py_location loc;
    memset(&loc, 0, sizeof loc);
    loc.runtime_addr = BASE + 8;
    loc.code_type = BASE + 16;
    loc.frame_type = BASE + 24;
    loc.unicode_type = BASE + 32;
    loc.bytes_type = BASE + 40;
    snprintf(loc.version.text, sizeof loc.version.text, "3.%d.0", layout->minor);
    struct py_process *py;
    if (py_open_reader(r, layout, &loc, &py, NULL) != 0)
        return 0;
    struct py_thread threads[8];
    struct py_frame frames[64];
    size_t count = 0, depth;
    py_begin_sample(py);
    if (py_list_threads(py, threads, 8, &count, NULL) == 0) {
        for (size_t i = 0; i < count && i < 8; i++) {
            if (py_thread_stack(py, &threads[i], frames, 64, &depth, NULL) < 0)
                continue;
            for (size_t f = 0; f < depth; f++) {
                /* touch every string the walker returned */
                volatile size_t n = strlen(frames[f].code->name) + strlen(frames[f].code->filename);
                (void)n;
            }
        }
    }
    py_detach(py);
    return 0;
}
