/*
 * endpoints.c — the agent's endpoint table, seen from outside (see
 * endpoints.h and src/agent/endpoint_table.h for the layout and its
 * lock-free protocol).  Everything read is checked: the magic, version and
 * sizes must match before a slot is believed, labels are bounded and
 * re-terminated.
 */
#include "endpoints.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../agent/endpoint_table.h"
#include "../target/elf.h"
#include "../target/maps.h"
#include "../target/reader.h"

#define MAX_PROCESSES 256
#define LOCATE_INTERVAL_NS 1000000000ull
#define AGENT_SO_SUFFIX "/pyrometer/_agent.abi3.so"

struct endpoint_process {
    pid_t pid;
    struct reader *reader;
    uint64_t table;            /* address in the target, 0 until found */
    uint64_t next_locate_ns;
    uint64_t read_at;          /* t_ns of the sample the copies are for */
    int valid;                 /* copy read and checked */
    int before_fresh;          /* before read (and checked) since the last refresh */
    int bracketed;             /* this sample has a before read to compare with */
    struct pm_endpoint_table copy;     /* read after the stacks */
    struct pm_endpoint_table before;   /* read before them */
};

struct endpoint_map {
    struct endpoint_process procs[MAX_PROCESSES];
    size_t n;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct endpoint_map *endpoint_map_new(void)
{
    return calloc(1, sizeof(struct endpoint_map));
}

void endpoint_map_free(struct endpoint_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        if (m->procs[i].reader)
            reader_close(m->procs[i].reader);
    free(m);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The table's address in process p (0 if the agent is not loaded). */
static uint64_t locate_table(struct endpoint_process *p)
{
    struct proc_maps maps;
    struct pm_error err;
    if (maps_read(p->pid, &maps, &err) != 0)
        return 0;
    uint64_t addr = 0;
    for (size_t i = 0; i < maps.count && addr == 0; i++) {
        const struct map_entry *e = &maps.entries[i];
        if (e->offset != 0 || !ends_with(e->path, AGENT_SO_SUFFIX))
            continue;
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "/proc/%d/root%s", (int)p->pid, e->path);
        struct elf_image *img;
        if (elf_open(path, &img, &err) != 0)
            continue;
        uint64_t value, size;
        if (elf_symbol(img, PYROMETER_ENDPOINT_SYMBOL, &value, &size) == 0 &&
            size == sizeof(struct pm_endpoint_table)) {
            const struct map_entry *first = maps_first_of(&maps, e->path);
            uint64_t base = first && first->start < e->start ? first->start : e->start;
            addr = (elf_is_dyn(img) ? base - elf_base_vaddr(img) : 0) + value;
        }
        elf_close(img);
    }
    maps_free(&maps);
    return addr;
}

static struct endpoint_process *process_for(struct endpoint_map *m, pid_t pid)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->procs[i].pid == pid)
            return &m->procs[i];
    if (m->n == MAX_PROCESSES)
        return NULL;
    struct pm_error err;
    struct reader *r = reader_remote_new(pid, &err);
    if (r == NULL)
        return NULL;
    struct endpoint_process *p = &m->procs[m->n++];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->reader = r;
    return p;
}

/* Read the table into *t; 0 when it is there and its header checks out. */
static int read_table(struct endpoint_process *p, struct pm_endpoint_table *t)
{
    if (p->table == 0) {
        uint64_t now = mono_ns();
        if (now < p->next_locate_ns)
            return -1;
        p->next_locate_ns = now + LOCATE_INTERVAL_NS;
        p->table = locate_table(p);
        if (p->table == 0)
            return -1;
    }
    struct pm_error err;
    if (reader_read_fresh(p->reader, p->table, t, sizeof *t, &err) != 0) {
        p->table = 0;   /* unmapped (or gone): look again later */
        return -1;
    }
    int ok = memcmp(t->magic, PM_ENDPOINT_MAGIC, sizeof PM_ENDPOINT_MAGIC) == 0 &&
             t->version == PM_ENDPOINT_VERSION && t->slots == PM_ENDPOINT_SLOTS &&
             t->slot_size == sizeof(struct pm_endpoint_slot) &&
             t->label_size == PM_ENDPOINT_LABEL;
    return ok ? 0 : -1;
}

void endpoint_map_before(struct endpoint_map *m, pid_t pid)
{
    struct endpoint_process *p = process_for(m, pid);
    if (p != NULL)
        p->before_fresh = read_table(p, &p->before) == 0;
}

/* The second read, once per sample and process. */
static void refresh(struct endpoint_process *p, uint64_t t_ns)
{
    if (p->read_at == t_ns && p->read_at != 0)
        return;
    p->read_at = t_ns;
    p->valid = read_table(p, &p->copy) == 0;
    p->bracketed = p->before_fresh;
    p->before_fresh = 0;
}

static struct pm_endpoint_slot *slot_of(struct pm_endpoint_table *t, pid_t tid)
{
    for (uint32_t i = 0; i < PM_ENDPOINT_SLOTS; i++)
        if (t->slot[i].tid == tid)
            return &t->slot[i];
    return NULL;
}

enum endpoint_state endpoint_map_label(struct endpoint_map *m, pid_t pid, pid_t tid,
                                       uint64_t t_ns, const char **label)
{
    *label = NULL;
    struct endpoint_process *p = process_for(m, pid);
    if (p == NULL)
        return ENDPOINT_NONE;
    refresh(p, t_ns);
    if (!p->valid)
        return ENDPOINT_NONE;
    struct pm_endpoint_slot *s = slot_of(&p->copy, tid);
    if (s == NULL)
        return ENDPOINT_NONE;
    if (s->seq_end != s->seq_begin)
        return ENDPOINT_CHANGED;   /* being rewritten as we read it */
    if (p->bracketed) {
        /* the slot must have been whole, and the same, before the stacks */
        struct pm_endpoint_slot *b = slot_of(&p->before, tid);
        if (b == NULL ? s->label[0] != '\0'
                      : b->seq_end != b->seq_begin || b->seq_begin != s->seq_begin)
            return ENDPOINT_CHANGED;
    }
    s->label[PM_ENDPOINT_LABEL - 1] = '\0';
    if (s->label[0] == '\0')
        return ENDPOINT_NONE;
    *label = s->label;
    return ENDPOINT_SERVING;
}
