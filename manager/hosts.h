/*
 * canopy-managerd: the leader's host table shared by hosts.c (records,
 * commands) and hosts_bus.c (agent bus callbacks). Loop thread only.
 */
#ifndef CANOPY_MANAGER_HOSTS_H
#define CANOPY_MANAGER_HOSTS_H

#include "lib/bus.h"
#include "lib/bus_keys.h"
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

/* ---- hostkeys.c: who may use the bus (docs/security.md) ------------- */

/* Path of the manager's bus key file in its state directory. */
#define MGR_BUS_KEY_FILE "bus.key"
/* Default and bounds of a join token's life (s). */
#define MGR_JOIN_TTL_DEFAULT 3600
#define MGR_JOIN_TTL_MIN 60
#define MGR_JOIN_TTL_MAX (7 * 24 * 3600)

/* One host's bus key as the leader keeps it (mirror of etcd). */
struct mgr_hostkey {
	char host[BUS_HOST_ID_MAX + 1];
	char key[BUS_CURVE_KEY_LEN + 1];
	uint64_t expires_ms; /* wall clock; 0: the host's own key */
};

/* Read state_dir/pki/bus.key, or make it when there is none (then standby
 * managers need a copy; 'canopy cluster init' makes it for all). */
CN_MUST_CHECK int mgr_bus_key_load(const char *state_dir, struct bus_keys *k,
				   char *err, size_t errlen);
/* Load every /canopy/hostkeys/ record into m's table. 0 or -errno. */
CN_MUST_CHECK int mgr_hostkeys_load(struct manager *m);
void mgr_hostkeys_clear(struct manager *m);
/* The table entry of host, or NULL (a binary search: the table is sorted
 * by host id). Valid until the next save or forget. */
struct mgr_hostkey *mgr_hostkey_of(struct manager *m, const char *host);
/* Store rec as host's key (fenced) and mirror it. 0 or -errno. */
CN_MUST_CHECK int mgr_hostkey_save(struct manager *m, const char *host,
				   const Canopy__V1__HostKey *rec);
/* Drop host's entry from the table (after its etcd key went). */
void mgr_hostkey_forget(struct manager *m, const char *host);
/* bus_server_ops.authorize: BUS_KEY_HOST, BUS_KEY_ENROL or -EACCES. */
int mgr_bus_authorize(void *arg, const char *host, const char *key);

/* ---- enrol.c --------------------------------------------------------- */

/* bus_server_ops.on_enrol: a host joins with its one-time key. */
void mgr_bus_enrol(void *arg, const char *host, const char *key,
		   const Canopy__V1__Envelope *env);
/* Answer bus request req from host with a CommandResult status. */
void mgr_bus_reply_status(struct manager *m, const char *host,
			  const Canopy__V1__Envelope *req, enum cn_code code,
			  const char *msg);

#endif
