/*
 * canopy-managerd: the etcd key layout under /canopy/ (docs/manager.md)
 * and the text of the leader key. Pure functions: no etcd, no state; any
 * thread.
 */
#ifndef CANOPY_MANAGER_KEYS_H
#define CANOPY_MANAGER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

#define MGR_KEY_LEADER "/canopy/leader" /* the elected manager */
#define MGR_KEY_EVENT_SEQ "/canopy/meta/event-seq" /* last event seq */
#define MGR_PREFIX_HOSTS "/canopy/hosts/" /* Host per host id */
#define MGR_PREFIX_VMS "/canopy/vms/" /* Vm per VM name */
#define MGR_PREFIX_TASKS "/canopy/tasks/" /* Task per task id */
#define MGR_PREFIX_EVENTS "/canopy/events/" /* Event per 20-digit seq */
#define MGR_PREFIX_PLACEMENT "/canopy/placement/" /* <host>/<vm>: index */
#define MGR_PREFIX_RUNNING "/canopy/running/" /* <vm>: running index */
#define MGR_PREFIX_ACTIVE "/canopy/active/" /* <task>: unfinished tasks */
#define MGR_PREFIX_HOSTKEYS "/canopy/hostkeys/" /* HostKey per host id */
/* Longest key we build. */
#define MGR_KEY_MAX 256
/* Longest manager id and API/bus address in the leader key. */
#define MGR_ID_MAX 64
#define MGR_ADDR_MAX 128

/* Which kind of name a key component is (what the checks accept). */
enum mgr_name_kind {
	MGR_NAME_HOST = 0, /* [A-Za-z0-9._-]{1,64} (bus host ids) */
	MGR_NAME_VM, /* [a-z0-9-]{1,63} */
	MGR_NAME_TASK, /* [0-9a-f-]{1,32} */
};

/* Whether s is a valid name of this kind (1) or not (0). */
int mgr_name_valid(enum mgr_name_kind kind, const char *s);

/* Write prefix + name into buf (size n). 0, -EINVAL if name is not a
 * valid name of kind, -ENAMETOOLONG if it does not fit. */
CN_MUST_CHECK int mgr_key_join(char *buf, size_t n, const char *prefix,
			       enum mgr_name_kind kind, const char *name);
/* "/canopy/events/%020llu". 0 or -ENAMETOOLONG. */
CN_MUST_CHECK int mgr_key_event(char *buf, size_t n, uint64_t seq);
/* "/canopy/placement/<host>/" (vm NULL: the host's prefix) or
 * ".../<host>/<vm>". 0, -EINVAL, -ENAMETOOLONG. */
CN_MUST_CHECK int mgr_key_placement(char *buf, size_t n, const char *host,
				    const char *vm);
/* The name part of key after prefix (NULL if key does not start with it). */
const char *mgr_key_name(const char *key, const char *prefix);

/* The leader key's value: "id=<id> api=<host:port> bus=<endpoint>". */
struct mgr_leader_info {
	char id[MGR_ID_MAX + 1];
	char api[MGR_ADDR_MAX + 1];
	char bus[MGR_ADDR_MAX + 1];
};

/* Format info into buf (size n). 0 or -ENAMETOOLONG. */
CN_MUST_CHECK int mgr_leader_format(char *buf, size_t n,
				    const struct mgr_leader_info *info);
/* Parse a leader value of len bytes (not NUL-terminated). 0 or -EINVAL
 * (missing field, field too long, stray text). */
CN_MUST_CHECK int mgr_leader_parse(const char *s, size_t len,
				   struct mgr_leader_info *out);

#endif
