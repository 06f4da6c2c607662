/*
 * endpoint_table.h — the fixed-layout table in which the in-process agent
 * publishes, per OS thread, the endpoint of the request it is serving, for
 * `pyrometer record --by-endpoint` to read from outside.
 *
 * Owns: the layout only (shared by the agent, which writes it, and
 * src/sample/endpoints.c, which finds it through the exported symbol
 * PYROMETER_ENDPOINT_SYMBOL of the loaded extension and reads it with
 * process_vm_readv).  Writers never block and never allocate: a slot per
 * thread, claimed once, with a sequence pair around every label change.
 *
 * Consistency without locks: a writer bumps `seq_begin` (the slot's last
 * word), writes the label, then sets `seq_end` (the first word) equal to it.
 * A reader copies the slot front to back and keeps the label only when
 * seq_end == seq_begin: a change that overlaps the copy makes them differ.
 */
#ifndef PYROMETER_AGENT_ENDPOINT_TABLE_H
#define PYROMETER_AGENT_ENDPOINT_TABLE_H

#include <stdint.h>

#define PYROMETER_ENDPOINT_SYMBOL "pyrometer_endpoint_table"
#define PM_ENDPOINT_MAGIC "pyrometer-ep-1"   /* 15 bytes + NUL */
#define PM_ENDPOINT_VERSION 1u
#define PM_ENDPOINT_SLOTS 128u
#define PM_ENDPOINT_LABEL 116u

struct pm_endpoint_slot {
    volatile uint32_t seq_end;    /* == seq_begin when the label is whole */
    volatile int32_t tid;         /* OS thread id owning the slot; 0 = free */
    char label[PM_ENDPOINT_LABEL];   /* "GET authors/<int:pk>/"; "" = no request */
    volatile uint32_t seq_begin;
};

struct pm_endpoint_table {
    char magic[16];
    uint32_t version;
    uint32_t slots;               /* PM_ENDPOINT_SLOTS */
    uint32_t slot_size;           /* sizeof(struct pm_endpoint_slot) */
    uint32_t label_size;          /* PM_ENDPOINT_LABEL */
    struct pm_endpoint_slot slot[PM_ENDPOINT_SLOTS];
};

_Static_assert(sizeof(struct pm_endpoint_slot) == 128, "endpoint slot layout");

#endif
