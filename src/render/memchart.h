/*
 * memchart.h — the temporal view of a memory capture: heap and RSS over time
 * as a self-contained HTML page (inline SVG, no scripts from the network),
 * with the high-water mark marked.  Sees only the series it is given; never
 * reads process memory or captures, never prints to the terminal.
 */
#ifndef PYROMETER_MEMCHART_H
#define PYROMETER_MEMCHART_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/error.h"

struct memchart_point {
    uint64_t t_ns;
    uint64_t heap;        /* live tracked bytes at t */
    uint64_t heap_max;    /* highest live bytes since the previous point */
    uint64_t rss;         /* 0 = unknown */
};

struct memchart {
    const char *title;
    const struct memchart_point *points;
    size_t npoints;
    uint64_t peak_bytes;
    uint64_t peak_t_ns;
    const char *peak_where;   /* the top location at the peak, may be NULL */
};

int render_memchart(const struct memchart *c, FILE *out, struct pm_error *err);

/* "12.3 MiB": bytes in binary units with three significant digits. */
void memchart_bytes(uint64_t bytes, char *out, size_t cap);

#endif
