/*
 * test_filenames.c — short file names for frame labels (sample/filenames.h).
 *
 * filenames_shorten with a fake "is this directory a package" predicate that
 * also records which directories it was asked about (the rule must stop at
 * the first non-package directory), then filenames_short on a real directory
 * tree with __init__.py files: absolute paths through /proc/PID/root,
 * relative paths through /proc/PID/cwd of a child that sits in another
 * directory, and the per-name cache (same pointer, kept after the tree
 * changes, correct across table growth).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sample/filenames.h"

/* ---- the rule, with a fake predicate ----------------------------------- */

struct fake_packages {
    const char *const *dirs;    /* NULL-terminated; "*" = every directory */
    char asked[80][512];        /* directories the rule asked about, in order */
    size_t nasked;
};

static int fake_is_package(const char *dir, void *ctx)
{
    struct fake_packages *fp = ctx;
    if (fp->nasked < sizeof fp->asked / sizeof fp->asked[0])
        snprintf(fp->asked[fp->nasked], sizeof fp->asked[0], "%s", dir);
    fp->nasked++;
    for (size_t i = 0; fp->dirs[i]; i++)
        if (strcmp(fp->dirs[i], "*") == 0 || strcmp(fp->dirs[i], dir) == 0)
            return 1;
    return 0;
}

static const char *const NO_PACKAGES[] = {NULL};

/* Shorten `path` with packages `dirs`; check the result and how many
 * directories were asked about. */
static void expect_short(const char *path, const char *const *dirs, const char *expected,
                         size_t expected_asked)
{
    struct fake_packages fp = {.dirs = dirs};
    char out[4096];
    memset(out, 'X', sizeof out);
    filenames_shorten(path, fake_is_package, &fp, out, sizeof out);
    if (strcmp(out, expected) != 0)
        fail_msg("shorten(\"%s\") = \"%s\", expected \"%s\"", path, out, expected);
    if (fp.nasked != expected_asked)
        fail_msg("shorten(\"%s\") asked about %zu directories, expected %zu", path, fp.nasked,
                 expected_asked);
}

static void test_nested_packages(void **state)
{
    (void)state;
    static const char *const dirs[] = {"/srv/app/mypkg", "/srv/app/mypkg/sub", NULL};
    struct fake_packages fp = {.dirs = dirs};
    char out[256];
    filenames_shorten("/srv/app/mypkg/sub/mod.py", fake_is_package, &fp, out, sizeof out);
    assert_string_equal(out, "mypkg/sub/mod.py");
    /* innermost first, stopping at the first directory that is not a package */
    assert_int_equal(fp.nasked, 3);
    assert_string_equal(fp.asked[0], "/srv/app/mypkg/sub");
    assert_string_equal(fp.asked[1], "/srv/app/mypkg");
    assert_string_equal(fp.asked[2], "/srv/app");

    expect_short("/srv/app/mypkg/__init__.py", dirs, "mypkg/__init__.py", 2);
    expect_short("/srv/app/mypkg/sub/deeper/mod.py", dirs, "mod.py", 1);
}

static void test_plain_script_is_basename(void **state)
{
    (void)state;
    expect_short("/home/me/projects/tool/script.py", NO_PACKAGES, "script.py", 1);
    expect_short("/usr/lib/python3.12/threading.py", NO_PACKAGES, "threading.py", 1);
}

/* A non-package directory between two packages ends the name there. */
static void test_gap_in_packages(void **state)
{
    (void)state;
    static const char *const dirs[] = {"/a/pkg", "/a/pkg/plain/sub", NULL};
    expect_short("/a/pkg/plain/sub/mod.py", dirs, "sub/mod.py", 2);
}

static void test_pseudo_files_unchanged(void **state)
{
    (void)state;
    static const char *const all[] = {"*", NULL};
    expect_short("<string>", all, "<string>", 0);
    expect_short("<frozen importlib._bootstrap>", all, "<frozen importlib._bootstrap>", 0);
    expect_short("<frozen importlib._bootstrap_external>", all,
                 "<frozen importlib._bootstrap_external>", 0);
    expect_short("<stdin>", all, "<stdin>", 0);
    /* a pseudo-file with a slash inside is still a pseudo-file */
    expect_short("<ipython-input-3-a/b>", all, "<ipython-input-3-a/b>", 0);
    expect_short("", all, "", 0);
}

static void test_relative_paths(void **state)
{
    (void)state;
    static const char *const dirs[] = {"mypkg", "mypkg/sub", NULL};
    expect_short("mod.py", dirs, "mod.py", 0);
    expect_short("mypkg/sub/mod.py", dirs, "mypkg/sub/mod.py", 2);
    expect_short("mypkg/mod.py", dirs, "mypkg/mod.py", 1);
    expect_short("other/mod.py", dirs, "mod.py", 1);
    expect_short("./mod.py", dirs, "mod.py", 1);
    static const char *const dot[] = {"./pkg", NULL};
    expect_short("./pkg/mod.py", dot, "pkg/mod.py", 2);
}

static void test_root_level_files(void **state)
{
    (void)state;
    static const char *const all[] = {"*", NULL};
    /* no directory to ask about */
    expect_short("/mod.py", all, "mod.py", 0);
    expect_short("/mod.py", NO_PACKAGES, "mod.py", 0);
    static const char *const pkg[] = {"/pkg", NULL};
    expect_short("/pkg/mod.py", pkg, "pkg/mod.py", 1);
    expect_short("/pkg/mod.py", NO_PACKAGES, "mod.py", 1);
}

/* Every directory a package: the walk is bounded (64 levels). */
static void test_walk_is_bounded(void **state)
{
    (void)state;
    static const char *const all[] = {"*", NULL};
    char path[1024] = "", expected[1024] = "";
    for (int i = 0; i < 70; i++) {
        char part[16];
        snprintf(part, sizeof part, "/d%02d", i);
        strcat(path, part);
        if (i >= 70 - 64) {
            strcat(expected, part + 1);
            strcat(expected, "/");
        }
    }
    strcat(path, "/m.py");
    strcat(expected, "m.py");
    expect_short(path, all, expected, 64);
    /* all the way to the root when it is short enough */
    expect_short("/a/b/c/m.py", all, "a/b/c/m.py", 3);
}

/* A directory part longer than PATH_MAX is not looked up: basename. */
static void test_overlong_directory(void **state)
{
    (void)state;
    static const char *const all[] = {"*", NULL};
    size_t n = 5000;
    char *path = malloc(n + 16);
    assert_non_null(path);
    path[0] = '/';
    memset(path + 1, 'd', n);
    strcpy(path + 1 + n, "/file.py");
    expect_short(path, all, "file.py", 0);
    free(path);
}

/* Output is truncated to cap and always terminated. */
static void test_output_truncated(void **state)
{
    (void)state;
    static const char *const dirs[] = {"/x/pkg", NULL};
    struct fake_packages fp = {.dirs = dirs};
    char out[8];
    memset(out, 'X', sizeof out);
    filenames_shorten("/x/pkg/module.py", fake_is_package, &fp, out, 5);
    assert_string_equal(out, "pkg/");
    assert_int_equal(out[5], 'X');
    filenames_shorten("<string>", fake_is_package, &fp, out, 4);
    assert_string_equal(out, "<st");
    filenames_shorten("/x/pkg/module.py", fake_is_package, &fp, out, 1);
    assert_string_equal(out, "");
}

/* ---- a real tree -------------------------------------------------------- */

struct tree {
    char root[256];     /* mkdtemp'd, absolute, no symlinks */
};

static void make_file(const char *root, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot create %s", path);
    fputs("# test\n", f);
    fclose(f);
}

static void make_dir(const char *root, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (mkdir(path, 0755) != 0)
        fail_msg("cannot mkdir %s", path);
}

static int tree_setup(void **state)
{
    struct tree *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    char tmpl[] = "/tmp/pm_filenames.XXXXXX";
    if (mkdtemp(tmpl) == NULL || realpath(tmpl, t->root) == NULL) {
        free(t);
        return -1;
    }
    make_dir(t->root, "app");
    make_dir(t->root, "app/mypkg");
    make_dir(t->root, "app/mypkg/sub");
    make_dir(t->root, "app/plain");
    make_dir(t->root, "app/plain/inner");
    make_file(t->root, "app/mypkg/__init__.py");
    make_file(t->root, "app/mypkg/sub/__init__.py");
    make_file(t->root, "app/mypkg/sub/mod.py");
    make_file(t->root, "app/mypkg/top.py");
    make_file(t->root, "app/script.py");
    make_file(t->root, "app/plain/inner/__init__.py");
    make_file(t->root, "app/plain/inner/x.py");
    *state = t;
    return 0;
}

static int tree_teardown(void **state)
{
    struct tree *t = *state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->root);
    int rc = system(cmd);
    free(t);
    return rc == 0 ? 0 : -1;
}

static void expect_real(struct filenames *fn, const char *root, const char *rel,
                        const char *expected)
{
    char path[1024];
    if (root)
        snprintf(path, sizeof path, "%s/%s", root, rel);
    else
        snprintf(path, sizeof path, "%s", rel);
    const char *got = filenames_short(fn, path);
    assert_non_null(got);
    if (strcmp(got, expected) != 0)
        fail_msg("filenames_short(\"%s\") = \"%s\", expected \"%s\"", path, got, expected);
}

static void test_real_tree_absolute(void **state)
{
    struct tree *t = *state;
    struct filenames *fn = filenames_new(getpid());
    assert_non_null(fn);
    expect_real(fn, t->root, "app/mypkg/sub/mod.py", "mypkg/sub/mod.py");
    expect_real(fn, t->root, "app/mypkg/top.py", "mypkg/top.py");
    expect_real(fn, t->root, "app/mypkg/__init__.py", "mypkg/__init__.py");
    expect_real(fn, t->root, "app/script.py", "script.py");
    expect_real(fn, t->root, "app/plain/inner/x.py", "inner/x.py");
    /* files need not exist: only the directories are looked at */
    expect_real(fn, t->root, "app/mypkg/sub/gone.py", "mypkg/sub/gone.py");
    expect_real(fn, NULL, "<string>", "<string>");
    expect_real(fn, NULL, "<frozen importlib._bootstrap>", "<frozen importlib._bootstrap>");
    expect_real(fn, NULL, "/nonexistent/dir/z.py", "z.py");
    filenames_free(fn);
}

static void test_real_tree_cache(void **state)
{
    struct tree *t = *state;
    struct filenames *fn = filenames_new(getpid());
    assert_non_null(fn);
    char path[1024];
    snprintf(path, sizeof path, "%s/app/mypkg/sub/mod.py", t->root);
    const char *first = filenames_short(fn, path);
    assert_string_equal(first, "mypkg/sub/mod.py");
    /* the same name from another buffer: the cached string itself */
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", path);
    assert_ptr_equal(filenames_short(fn, copy), first);

    /* results are cached per file name: removing the package marker later
     * does not change an answer already given, but a new name sees it */
    char marker[1024];
    snprintf(marker, sizeof marker, "%s/app/mypkg/__init__.py", t->root);
    assert_int_equal(unlink(marker), 0);
    assert_ptr_equal(filenames_short(fn, path), first);
    assert_string_equal(first, "mypkg/sub/mod.py");
    expect_real(fn, t->root, "app/mypkg/sub/other.py", "sub/other.py");
    make_file(t->root, "app/mypkg/__init__.py");

    /* grow the table well past its first size; every answer stays right */
    enum { N = 700 };
    const char *answers[N];
    for (int i = 0; i < N; i++) {
        char p[1024], want[64];
        snprintf(p, sizeof p, "%s/app/mypkg/sub/m%d.py", t->root, i);
        answers[i] = filenames_short(fn, p);
        snprintf(want, sizeof want, "mypkg/sub/m%d.py", i);
        assert_string_equal(answers[i], want);
    }
    for (int i = 0; i < N; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/app/mypkg/sub/m%d.py", t->root, i);
        assert_ptr_equal(filenames_short(fn, p), answers[i]);
    }
    assert_ptr_equal(filenames_short(fn, path), first);
    filenames_free(fn);
}

/* Relative names are looked up against the target's cwd, not ours. */
static void test_real_tree_relative_in_child(void **state)
{
    struct tree *t = *state;
    char app[512];
    snprintf(app, sizeof app, "%s/app", t->root);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        if (chdir(app) != 0)
            _exit(1);
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    ssize_t got = read(ready[0], &c, 1);
    close(ready[0]);

    struct filenames *fn = filenames_new(child);
    const char *sub = fn ? filenames_short(fn, "mypkg/sub/mod.py") : NULL;
    char sub_copy[256];
    snprintf(sub_copy, sizeof sub_copy, "%s", sub ? sub : "(null)");
    const char *top = fn ? filenames_short(fn, "mypkg/top.py") : NULL;
    char top_copy[256];
    snprintf(top_copy, sizeof top_copy, "%s", top ? top : "(null)");
    const char *plain = fn ? filenames_short(fn, "plain/inner/x.py") : NULL;
    char plain_copy[256];
    snprintf(plain_copy, sizeof plain_copy, "%s", plain ? plain : "(null)");
    filenames_free(fn);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);

    assert_int_equal(got, 1);
    assert_string_equal(sub_copy, "mypkg/sub/mod.py");
    assert_string_equal(top_copy, "mypkg/top.py");
    assert_string_equal(plain_copy, "inner/x.py");

    /* in our own cwd (not app/) the same relative names are no packages */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    if (strcmp(cwd, app) != 0) {
        struct filenames *self = filenames_new(getpid());
        assert_non_null(self);
        expect_real(self, NULL, "mypkg/sub/mod.py", "mod.py");
        filenames_free(self);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_packages),
        cmocka_unit_test(test_plain_script_is_basename),
        cmocka_unit_test(test_gap_in_packages),
        cmocka_unit_test(test_pseudo_files_unchanged),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_root_level_files),
        cmocka_unit_test(test_walk_is_bounded),
        cmocka_unit_test(test_overlong_directory),
        cmocka_unit_test(test_output_truncated),
        cmocka_unit_test_setup_teardown(test_real_tree_absolute, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_real_tree_cache, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_real_tree_relative_in_child, tree_setup,
                                        tree_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
