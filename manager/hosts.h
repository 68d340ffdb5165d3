/*
 * canopy-managerd: the leader's host table shared by hosts.c (records,
 * commands) and hosts_bus.c (agent bus callbacks). Loop thread only.
 */
#ifndef CANOPY_MANAGER_HOSTS_H
#define CANOPY_MANAGER_HOSTS_H

#include "lib/bus.h"
#include "manager/manager.h"

/* The bus callbacks of the manager (hosts_bus.c). */
extern const struct bus_server_ops mgr_bus_ops;

/* Add rec (taking it) to the table. NULL when out of memory. */
struct mgr_host *mgr_host_add(struct manager *m, Canopy__V1__Host *rec);
/* Store h's record (fenced). 0 or -errno (logged). */
CN_MUST_CHECK int mgr_host_save(struct manager *m, struct mgr_host *h);
/* Change h's state, store it and emit host.connected/disconnected with
 * "host <id> <why>". No-op when unchanged. */
void mgr_host_set_state(struct manager *m, struct mgr_host *h,
			Canopy__V1__HostState st, const char *why);

#endif
