/*
 * fuzz_capture.c — libFuzzer harness for the memory capture reader and the
 * replay (capture_read.c, replay.c).  The input is a capture file, given
 * whole as an exact-size buffer so ASan sees any read past its end.  Checks:
 * no crash, no leak, the replay's figures are consistent (what is held at
 * the peak or at the end never exceeds the peak, per-stack peaks add up to
 * it), and a second replay of the same bytes gives the same figures.
 * Seeds: tests/fuzz/corpus/fuzz_capture (small captures written by
 * tests/unit/test_capture.c's writer and by `pyrometer mem run`).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem/replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct replay r, again;
    struct pm_error err = {0};
    if (replay_buffer(data, size, &r, &err) != 0) {
        replay_free(&r);
        return 0;
    }
    uint64_t sum = 0;
    for (uint32_t s = 0; s <= r.nstacks; s++)
        sum += r.totals[s].peak_bytes;
    if (r.peak_bytes && sum != r.peak_bytes)
        abort();
    if (r.end_bytes > r.peak_bytes || r.leak_bytes > r.peak_bytes)
        abort();
    for (uint32_t s = 1; s <= r.nstacks; s++)
        if (r.stacks[s].parent >= s)
            abort();
    if (replay_buffer(data, size, &again, &err) != 0 || again.peak_bytes != r.peak_bytes ||
        again.events != r.events)
        abort();
    replay_free(&again);
    replay_free(&r);
    return 0;
}
