/*
 * render.h — turning a profile into files users open elsewhere.
 * One file per format (collapsed.c, flamegraph.c, speedscope.c, ...).  A
 * renderer sees only `struct profile` (profile/profile.h): it never reads
 * process memory, never prints to the terminal, and writes only to the FILE
 * it is given.  Errors writing are reported as PM_EOUTPUT.
 */
#ifndef PYROMETER_RENDER_H
#define PYROMETER_RENDER_H

#include <stdio.h>

#include "../common/error.h"
#include "../profile/profile.h"

struct render_opts {
    int full_filenames;  /* label with the full path instead of short_file */
    const char *title;   /* NULL: derived from meta.program */
};

enum render_format {
    RENDER_FLAMEGRAPH = 0,  /* self-contained interactive SVG */
    RENDER_SPEEDSCOPE,      /* speedscope JSON, one profile per thread */
    RENDER_RAW,             /* collapsed stacks: "root;...;leaf COUNT" */
    RENDER_PPROF,           /* gzipped perftools.profiles.Profile protobuf */
    RENDER_CHROMETRACE,     /* Trace Event Format JSON: nested slices per thread */
    RENDER_PSTATS,          /* marshalled cProfile stats for pstats / SnakeViz */
};

/* Whether the format reads the profile's timeline (runs); the others need
 * only the stack table. */
int render_needs_timeline(enum render_format format);

/* Parse "flamegraph" | "speedscope" | "raw" | "pprof" | "chrometrace" |
 * "pstats"; -1 when unknown. */
int render_format_parse(const char *name);
const char *render_format_name(enum render_format f);
/* Default file extension: "svg", "speedscope.json", "txt", "pb.gz",
 * "trace.json", "prof". */
const char *render_format_ext(enum render_format f);

int render_profile(enum render_format f, const struct profile *p,
                   const struct render_opts *o, FILE *out, struct pm_error *err);

int render_collapsed(const struct profile *p, const struct render_opts *o, FILE *out,
                     struct pm_error *err);
int render_flamegraph(const struct profile *p, const struct render_opts *o, FILE *out,
                      struct pm_error *err);
int render_speedscope(const struct profile *p, const struct render_opts *o, FILE *out,
                      struct pm_error *err);
int render_pprof(const struct profile *p, const struct render_opts *o, FILE *out,
                 struct pm_error *err);
int render_chrometrace(const struct profile *p, const struct render_opts *o, FILE *out,
                       struct pm_error *err);
int render_pstats(const struct profile *p, const struct render_opts *o, FILE *out,
                  struct pm_error *err);

/* Helpers shared by the renderers (render.c). */

/* A frame's label (profile_frame_label, never truncated) with invalid UTF-8
 * replaced by U+FFFD and control characters by spaces: one printable line;
 * malloc'd, NULL when out of memory. */
char *render_frame_label(const struct profile *p, uint32_t frame, int full_filenames);
/* A malloc'd copy of `s` in which every byte sequence that is not valid
 * UTF-8 (including overlong forms and surrogates) becomes U+FFFD; NULL when
 * out of memory. */
char *render_utf8_clean(const char *s);
/* Flush `out` and turn any write error into PM_EOUTPUT naming `what`.
 * Returns 0 or -1. */
int render_finish(FILE *out, const char *what, struct pm_error *err);

/* The hottest functions as a terminal table (own %, total %, label), at most
 * `limit` rows sorted by own samples. */
int render_top_table(const struct profile *p, size_t limit, const struct render_opts *o,
                     FILE *out, struct pm_error *err);

/* The label of every frame of p (render_frame_label), as an array indexed by
 * frame id; NULL when out of memory.  Free with render_free_labels. */
char **render_frame_labels(const struct profile *p, int full_filenames);
void render_free_labels(char **labels, uint32_t n);

/* The profile's timeline runs grouped by thread, each group in timeline
 * order: thread t's runs are run_ids[first[t] .. first[t + 1]).  Both arrays
 * are malloc'd (caller frees).  0, or -1 when out of memory. */
int render_runs_by_thread(const struct profile *p, size_t **run_ids, size_t **first);

#endif
