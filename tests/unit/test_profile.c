/*
 * test_profile.c — the aggregated profile: interning of strings, frames,
 * threads and stacks; per-stack counts; the run-length timeline; labels; and
 * a stress run of 100 000 distinct stacks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "profile/profile.h"

static void test_new_profile_is_empty(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    assert_non_null(p);
    assert_int_equal(p->nstrings, 1);
    assert_string_equal(profile_str(p, 0), "");
    assert_int_equal(p->nframes, 0);
    assert_int_equal(p->nstacks, 0);
    assert_int_equal(p->nruns, 0);
    assert_int_equal(profile_total(p), 0);
    assert_string_equal(profile_str(p, 12345), "");  /* out of range: "" */
    profile_free(p);
    profile_free(NULL);
}

static void test_strings_are_interned(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t a = profile_string(p, "alpha");
    uint32_t b = profile_string(p, "beta");
    assert_int_not_equal(a, b);
    assert_int_equal(profile_string(p, "alpha"), a);
    assert_int_equal(profile_string(p, ""), 0);
    assert_int_equal(profile_string(p, NULL), 0);
    /* a prefix is a different string */
    uint32_t al = profile_string(p, "alph");
    assert_int_not_equal(al, a);
    assert_string_equal(profile_str(p, a), "alpha");
    assert_string_equal(profile_str(p, al), "alph");
    assert_string_equal(profile_str(p, profile_string(p, "fünction_λ")), "fünction_λ");
    profile_free(p);
}

static void test_frames_are_interned_by_every_field(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t f = profile_frame(p, "run", "/app/pkg/mod.py", "pkg/mod.py", 10,
                               PROFILE_FRAME_PYTHON);
    assert_int_equal(profile_frame(p, "run", "/app/pkg/mod.py", "pkg/mod.py", 10,
                                   PROFILE_FRAME_PYTHON), f);
    assert_int_not_equal(profile_frame(p, "run", "/app/pkg/mod.py", "pkg/mod.py", 11,
                                       PROFILE_FRAME_PYTHON), f);
    assert_int_not_equal(profile_frame(p, "run", "/other/pkg/mod.py", "pkg/mod.py", 10,
                                       PROFILE_FRAME_PYTHON), f);
    assert_int_not_equal(profile_frame(p, "run", "/app/pkg/mod.py", "mod.py", 10,
                                       PROFILE_FRAME_PYTHON), f);
    assert_int_not_equal(profile_frame(p, "walk", "/app/pkg/mod.py", "pkg/mod.py", 10,
                                       PROFILE_FRAME_PYTHON), f);
    assert_int_not_equal(profile_frame(p, "run", "/app/pkg/mod.py", "pkg/mod.py", 10,
                                       PROFILE_FRAME_NATIVE), f);
    assert_int_equal(p->nframes, 6);
    const struct profile_frame *fr = &p->frames[f];
    assert_string_equal(profile_str(p, fr->name), "run");
    assert_string_equal(profile_str(p, fr->filename), "/app/pkg/mod.py");
    assert_string_equal(profile_str(p, fr->short_file), "pkg/mod.py");
    assert_int_equal(fr->line, 10);
    assert_int_equal(fr->kind, PROFILE_FRAME_PYTHON);
    profile_free(p);
}

static void test_threads_are_interned_by_pid_and_id(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 100, 0x7f00, 0, NULL);
    assert_int_equal(profile_thread(p, 100, 0x7f00, 0, NULL), t);
    assert_string_equal(profile_str(p, p->threads[t].name), "");
    assert_int_equal(p->threads[t].os_thread_id, 0);

    /* name and os id are filled in later, and not erased by unknowns */
    assert_int_equal(profile_thread(p, 100, 0x7f00, 4242, "MainThread"), t);
    assert_int_equal(profile_thread(p, 100, 0x7f00, 0, NULL), t);
    assert_int_equal(profile_thread(p, 100, 0x7f00, 0, ""), t);
    assert_int_equal(p->threads[t].os_thread_id, 4242);
    assert_string_equal(profile_str(p, p->threads[t].name), "MainThread");

    uint32_t same_id_other_pid = profile_thread(p, 101, 0x7f00, 0, NULL);
    uint32_t other_id = profile_thread(p, 100, 0x7f01, 0, "worker");
    assert_int_not_equal(same_id_other_pid, t);
    assert_int_not_equal(other_id, t);
    assert_int_not_equal(other_id, same_id_other_pid);
    assert_int_equal(p->nthreads, 3);
    assert_int_equal(p->threads[same_id_other_pid].pid, 101);

    /* many threads stay distinct and findable */
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(profile_thread(p, 7, i, i + 1, NULL), 3 + i);
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(profile_thread(p, 7, i, 0, NULL), 3 + i);
    profile_free(p);
}

static void test_identical_stacks_aggregate(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 1, 1, 1, "main");
    uint32_t f[3] = {
        profile_frame(p, "main", "/a.py", "a.py", 1, PROFILE_FRAME_PYTHON),
        profile_frame(p, "work", "/a.py", "a.py", 5, PROFILE_FRAME_PYTHON),
        profile_frame(p, "leaf", "/a.py", "a.py", 9, PROFILE_FRAME_PYTHON),
    };
    uint32_t s1 = profile_add(p, t, f, 3, 1, 0);
    uint32_t s2 = profile_add(p, t, f, 3, 2, 10);
    uint32_t shorter = profile_add(p, t, f, 2, 1, 20);
    uint32_t empty = profile_add(p, t, NULL, 0, 1, 30);
    assert_int_equal(s1, s2);
    assert_int_not_equal(shorter, s1);
    assert_int_not_equal(empty, s1);
    assert_int_equal(p->nstacks, 3);
    assert_int_equal(p->stacks[s1].count, 3);
    assert_int_equal(p->stacks[s1].depth, 3);
    assert_int_equal(p->stacks[shorter].count, 1);
    assert_int_equal(p->stacks[empty].depth, 0);
    assert_memory_equal(profile_stack_frames(p, &p->stacks[s1]), f, sizeof f);
    assert_int_equal(profile_total(p), 5);
    assert_int_equal(p->threads[t].samples, 5);

    /* the caller's array is copied, not kept */
    uint32_t copy[3];
    memcpy(copy, f, sizeof f);
    assert_int_equal(profile_add(p, t, copy, 3, 1, 40), s1);
    copy[2] = f[0];
    assert_int_not_equal(profile_add(p, t, copy, 3, 1, 50), s1);
    profile_free(p);
}

static void test_threads_keep_separate_stacks(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t1 = profile_thread(p, 1, 1, 0, NULL);
    uint32_t t2 = profile_thread(p, 1, 2, 0, NULL);
    uint32_t f = profile_frame(p, "f", "/x.py", "x.py", 3, PROFILE_FRAME_PYTHON);
    uint32_t a = profile_add(p, t1, &f, 1, 4, 0);
    uint32_t b = profile_add(p, t2, &f, 1, 6, 0);
    assert_int_not_equal(a, b);
    assert_int_equal(p->stacks[a].thread, t1);
    assert_int_equal(p->stacks[b].thread, t2);
    assert_int_equal(p->stacks[a].count, 4);
    assert_int_equal(p->stacks[b].count, 6);
    assert_int_equal(p->threads[t1].samples, 4);
    assert_int_equal(p->threads[t2].samples, 6);
    assert_int_equal(profile_total(p), 10);
    profile_free(p);
}

static void test_bad_arguments_fail_without_change(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t = profile_thread(p, 1, 1, 0, NULL);
    uint32_t f = profile_frame(p, "f", "", "", 0, PROFILE_FRAME_PYTHON);
    uint32_t unknown_frame = f + 1;
    assert_int_equal(profile_add(p, t + 1, &f, 1, 1, 0), UINT32_MAX);
    assert_int_equal(profile_add(p, t, &unknown_frame, 1, 1, 0), UINT32_MAX);
    assert_int_equal(profile_add(p, t, NULL, 2, 1, 0), UINT32_MAX);
    assert_int_equal(p->nstacks, 0);
    assert_int_equal(p->nruns, 0);
    profile_free(p);
}

static void test_timeline_is_run_length_encoded(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t t1 = profile_thread(p, 1, 1, 0, NULL);
    uint32_t t2 = profile_thread(p, 1, 2, 0, NULL);
    uint32_t a = profile_frame(p, "a", "/m.py", "m.py", 1, PROFILE_FRAME_PYTHON);
    uint32_t b = profile_frame(p, "b", "/m.py", "m.py", 2, PROFILE_FRAME_PYTHON);

    /* tick 0..2: t1 in a, t2 in b; tick 3: t1 moves to b; tick 4: back to a */
    uint32_t t1_a = 0, t1_b = 0, t2_b = 0;
    for (uint64_t tick = 0; tick < 3; tick++) {
        t1_a = profile_add(p, t1, &a, 1, 1, tick * 10);
        t2_b = profile_add(p, t2, &b, 1, 1, tick * 10);
    }
    t1_b = profile_add(p, t1, &b, 1, 1, 30);
    assert_int_equal(profile_add(p, t1, &a, 1, 2, 40), t1_a);
    /* zero samples do not touch the timeline */
    assert_int_equal(profile_add(p, t1, &b, 1, 0, 50), t1_b);

    assert_int_equal(p->nruns, 4);
    const struct profile_run *r = p->runs;
    assert_int_equal(r[0].thread, t1);
    assert_int_equal(r[0].stack, t1_a);
    assert_int_equal(r[0].count, 3);
    assert_int_equal(r[0].start_ns, 0);
    assert_int_equal(r[0].end_ns, 20);
    assert_int_equal(r[1].thread, t2);
    assert_int_equal(r[1].stack, t2_b);
    assert_int_equal(r[1].count, 3);
    assert_int_equal(r[1].end_ns, 20);
    assert_int_equal(r[2].thread, t1);
    assert_int_equal(r[2].stack, t1_b);
    assert_int_equal(r[2].count, 1);
    assert_int_equal(r[2].start_ns, 30);
    assert_int_equal(r[3].stack, t1_a);
    assert_int_equal(r[3].count, 2);
    assert_int_equal(r[3].start_ns, 40);

    uint64_t timeline = 0;
    for (size_t i = 0; i < p->nruns; i++)
        timeline += p->runs[i].count;
    assert_int_equal(timeline, profile_total(p));
    profile_free(p);
}

static void test_frame_labels(void **state)
{
    (void)state;
    struct profile *p = profile_new();
    uint32_t with_line = profile_frame(p, "Handler.get", "/srv/app/views.py", "app/views.py",
                                       42, PROFILE_FRAME_PYTHON);
    uint32_t no_line = profile_frame(p, "load", "/srv/app/io.py", "app/io.py", 0,
                                     PROFILE_FRAME_PYTHON);
    uint32_t synth = profile_frame(p, "thread 0x1 (MainThread)", "/ignored", "ignored", 7,
                                   PROFILE_FRAME_SYNTH);
    uint32_t native = profile_frame(p, "PyEval_EvalFrameDefault", "", "", 0,
                                    PROFILE_FRAME_NATIVE);
    uint32_t only_full = profile_frame(p, "g", "/abs/g.py", "", 3, PROFILE_FRAME_PYTHON);
    char buf[256];

    profile_frame_label(p, with_line, 0, buf, sizeof buf);
    assert_string_equal(buf, "Handler.get (app/views.py:42)");
    profile_frame_label(p, with_line, 1, buf, sizeof buf);
    assert_string_equal(buf, "Handler.get (/srv/app/views.py:42)");
    profile_frame_label(p, no_line, 0, buf, sizeof buf);
    assert_string_equal(buf, "load (app/io.py)");
    profile_frame_label(p, synth, 0, buf, sizeof buf);
    assert_string_equal(buf, "thread 0x1 (MainThread)");
    profile_frame_label(p, native, 0, buf, sizeof buf);
    assert_string_equal(buf, "PyEval_EvalFrameDefault");
    profile_frame_label(p, only_full, 0, buf, sizeof buf);
    assert_string_equal(buf, "g (/abs/g.py:3)");

    /* truncation stays NUL-terminated; capacity 0 writes nothing */
    char small[8];
    memset(small, 'x', sizeof small);
    profile_frame_label(p, with_line, 0, small, sizeof small);
    assert_string_equal(small, "Handler");
    char untouched = 'z';
    profile_frame_label(p, with_line, 0, &untouched, 0);
    assert_int_equal(untouched, 'z');
    profile_free(p);
}

/* 100 000 distinct stacks over 2 threads, each added twice: every stack is
 * found again, counts add up, and the pool holds each stack once. */
static void test_stress_100k_stacks(void **state)
{
    (void)state;
    enum { NSTACKS = 100000, DEPTH = 12, NFUNCS = 500 };
    struct profile *p = profile_new();
    uint32_t threads[2] = { profile_thread(p, 1, 1, 0, NULL), profile_thread(p, 1, 2, 0, NULL) };
    uint32_t funcs[NFUNCS];
    for (int i = 0; i < NFUNCS; i++) {
        char name[32];
        snprintf(name, sizeof name, "func_%d", i);
        funcs[i] = profile_frame(p, name, "/s.py", "s.py", i + 1, PROFILE_FRAME_PYTHON);
    }
    uint64_t seed = 88172645463325252ULL;
    static uint32_t ids[NSTACKS];
    for (int round = 0; round < 2; round++) {
        uint64_t x = seed;
        for (uint32_t i = 0; i < NSTACKS; i++) {
            uint32_t frames[DEPTH];
            /* the first frames are random; the last two encode i, so every
             * stack is distinct */
            for (int d = 0; d < DEPTH - 2; d++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                frames[d] = funcs[x % NFUNCS];
            }
            frames[DEPTH - 2] = funcs[(i / NFUNCS) % NFUNCS];
            frames[DEPTH - 1] = funcs[i % NFUNCS];
            uint32_t id = profile_add(p, threads[i / (NSTACKS / 2)], frames, DEPTH, 1, i);
            assert_int_not_equal(id, UINT32_MAX);
            if (round == 0)
                ids[i] = id;
            else if (id != ids[i])
                fail_msg("stack %u found as %u, first added as %u", i, id, ids[i]);
        }
    }
    assert_int_equal(p->nstacks, NSTACKS);
    assert_int_equal(p->pool_len, (size_t)NSTACKS * DEPTH);
    assert_int_equal(profile_total(p), 2 * NSTACKS);
    for (uint32_t i = 0; i < NSTACKS; i++)
        if (p->stacks[i].count != 2)
            fail_msg("stack %u has count %llu", i, (unsigned long long)p->stacks[i].count);
    assert_int_equal(p->threads[threads[0]].samples, NSTACKS);
    assert_int_equal(p->threads[threads[1]].samples, NSTACKS);
    profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_profile_is_empty),
        cmocka_unit_test(test_strings_are_interned),
        cmocka_unit_test(test_frames_are_interned_by_every_field),
        cmocka_unit_test(test_threads_are_interned_by_pid_and_id),
        cmocka_unit_test(test_identical_stacks_aggregate),
        cmocka_unit_test(test_threads_keep_separate_stacks),
        cmocka_unit_test(test_bad_arguments_fail_without_change),
        cmocka_unit_test(test_timeline_is_run_length_encoded),
        cmocka_unit_test(test_frame_labels),
        cmocka_unit_test(test_stress_100k_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
