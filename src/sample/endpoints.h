/*
 * endpoints.h — which request each thread of a process is serving, read
 * from the table pyrometer's in-process agent publishes
 * (src/agent/endpoint_table.h), for `record --by-endpoint`.
 *
 * Owns: finding the table in each sampled process (the agent's extension in
 * /proc/PID/maps, its exported symbol, the load bias; looked for again at
 * most once a second until found, since the agent may load late), reading
 * it once per sample (one process_vm_readv; the target is never paused or
 * signalled), and answering per thread.  Never prints.
 */
#ifndef PYROMETER_ENDPOINTS_H
#define PYROMETER_ENDPOINTS_H

#include <stdint.h>
#include <sys/types.h>

struct endpoint_map;

struct endpoint_map *endpoint_map_new(void);
void endpoint_map_free(struct endpoint_map *m);

/* The endpoint ("GET /route/") thread tid of process pid was serving in the
 * sample taken at t_ns, or NULL (no agent, no request, or a label being
 * rewritten during the read).  Valid until the next call with another t_ns. */
const char *endpoint_map_label(struct endpoint_map *m, pid_t pid, pid_t tid, uint64_t t_ns);

#endif
