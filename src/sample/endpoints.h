/*
 * endpoints.h — which request each thread of a process is serving, read
 * from the table pyrometer's in-process agent publishes
 * (src/agent/endpoint_table.h), for `record --by-endpoint`.
 *
 * Owns: finding the table in each sampled process (the agent's extension in
 * /proc/PID/maps, its exported symbol, the load bias; looked for again at
 * most once a second until found, since the agent may load late), reading
 * it just before and just after each sample's stacks (one process_vm_readv
 * each; the target is never paused or signalled), and answering per thread
 * only when the thread's slot did not change between the two reads — so a
 * stack is never filed under the request that followed or preceded it.
 * Never prints.
 */
#ifndef PYROMETER_ENDPOINTS_H
#define PYROMETER_ENDPOINTS_H

#include <stdint.h>
#include <sys/types.h>

struct endpoint_map;

struct endpoint_map *endpoint_map_new(void);
void endpoint_map_free(struct endpoint_map *m);

/* Read process pid's table now, just before its stacks are read (the
 * sampler's before_take). */
void endpoint_map_before(struct endpoint_map *m, pid_t pid);

enum endpoint_state {
    ENDPOINT_NONE = 0,    /* no agent, or no request being served */
    ENDPOINT_SERVING,     /* *label is the request's endpoint */
    ENDPOINT_CHANGED,     /* a request began or ended while the stack was read */
};

/* What thread tid of process pid was serving in the sample taken at t_ns:
 * the table is read again (once per sample and process) and compared with
 * the read endpoint_map_before made.  *label ("GET /route/") is set for
 * ENDPOINT_SERVING and stays valid until the next call with another t_ns. */
enum endpoint_state endpoint_map_label(struct endpoint_map *m, pid_t pid, pid_t tid,
                                       uint64_t t_ns, const char **label);

#endif
