/*
 * canopy-managerd: the in-memory inventory index (docs/manager.md,
 * "Inventory index"): per-host VM counts, total, running and host counts,
 * kept from one keys-only snapshot of the index prefixes and then an etcd
 * watch, so that ListHosts, GetHost and GetCluster make no per-host and no
 * O(all VMs) etcd request.
 *
 * Two layers:
 * - struct mgr_index (index.c): pure counting. Keys in, counts out; no
 *   etcd, no state beyond the struct; any thread, one at a time.
 * - the sync layer (index_sync.c): loads the snapshot page by page on loop
 *   timers, runs the watch and applies its events on a loop timer and
 *   before each read, reloads after a
 *   compaction or a failed watch, and brings the index up to a revision
 *   for a request. Loop thread only (like the rest of the manager): the
 *   watch's own thread only queues events, which the loop thread applies,
 *   so the counts need no lock.
 */
#ifndef CANOPY_MANAGER_INDEX_H
#define CANOPY_MANAGER_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "manager/keys.h"

struct etcd_event;
struct manager;

/* What a key under /canopy/ is to the index. */
enum mgr_index_kind {
	MGR_INDEX_OTHER = 0, /* not counted (tasks, events, leader...) */
	MGR_INDEX_HOST, /* /canopy/hosts/<host> */
	MGR_INDEX_VM, /* /canopy/vms/<vm> */
	MGR_INDEX_RUNNING, /* /canopy/running/<vm> */
	MGR_INDEX_PLACEMENT, /* /canopy/placement/<host>/<vm> */
	MGR_INDEX_BAD, /* under a counted prefix, but malformed */
};

/* Buckets of a new index's host table (it doubles as hosts come). */
#define MGR_INDEX_BUCKETS_MIN 64

struct mgr_index_host; /* index.c: one host with at least one VM */

struct mgr_index {
	struct mgr_index_host **buckets;
	size_t n_buckets;
	size_t n_entries; /* hosts with at least one placed VM */
	int64_t hosts; /* keys under /canopy/hosts/ */
	int64_t vms; /* keys under /canopy/vms/ */
	int64_t running; /* keys under /canopy/running/ */
	int64_t placed; /* keys under /canopy/placement/ */
	int64_t rev; /* every change up to this revision is counted */
	uint64_t bad_keys; /* malformed keys ignored (each logged) */
	uint64_t underflows; /* deletes of keys never counted (logged) */
};

/* Classify key (len bytes, need not be NUL-terminated); for a placement
 * key host (size MGR_ID_MAX + 1) gets the host id. Pure. */
enum mgr_index_kind mgr_index_key_parse(const char *key, size_t len,
					char *host);

/* Set up an empty index. 0 or -ENOMEM. */
CN_MUST_CHECK int mgr_index_init(struct mgr_index *ix);
/* Free its table and zero it (a zeroed or freed index is accepted). */
void mgr_index_free(struct mgr_index *ix);
/* Count key in (delta +1: it now exists) or out (-1: it is gone). 0
 * (also for keys the index does not count), -EINVAL for a malformed key
 * under a counted prefix (ignored, logged, bad_keys++), -ERANGE when a
 * count would go below zero (kept at zero, logged, underflows++: the
 * index missed something; the caller reloads), -ENOMEM. */
CN_MUST_CHECK int mgr_index_add(struct mgr_index *ix, const char *key,
				size_t len, int delta);
/* Apply one watch event: a PUT of a new key (version 1) counts it in, a
 * PUT of an existing key changes nothing, a DELETE counts it out; rev
 * moves to the event's revision. Returns as mgr_index_add. */
CN_MUST_CHECK int mgr_index_apply(struct mgr_index *ix,
				  const struct etcd_event *ev);
/* VMs placed on host (0 for a host the index has no VM for). */
uint32_t mgr_index_host_vms(const struct mgr_index *ix, const char *host);

/* ---- index_sync.c: the index of a running manager (loop thread) ------- */

/* Longest a request waits for the index to reach its revision (ms). */
#define MGR_INDEX_WAIT_MS 2000
/* Wait after which a request writes the barrier key (ms): the watch is
 * normally a few ms behind; a longer gap means the revision it waits for
 * was a write outside /canopy/, which the watch never delivers. */
#define MGR_INDEX_BARRIER_MS 50
/* Keys read per page of the start-up snapshot. */
#define MGR_INDEX_PAGE 1000
/* How often queued watch events are applied between requests (ms); the
 * watch queues up to 4096 events, so bursts of 80,000 changes/s fit. */
#define MGR_INDEX_DRAIN_MS 50
/* Pause before retrying a failed page or watch (ms). */
#define MGR_INDEX_RETRY_MS 500
/* The barrier key: any write under /canopy/ moves the watch on. */
#define MGR_KEY_INDEX_BARRIER "/canopy/meta/index-barrier"

/* Start loading the index (a timer on the loop; the watch follows). Every
 * manager runs it, leader or standby. 0 or -errno. */
CN_MUST_CHECK int mgr_index_start(struct manager *m);
/* Stop the watch and free the index (shutdown). */
void mgr_index_stop(struct manager *m);
/* The index, once it has applied every change up to revision rev (a
 * request's read revision; 0: as it is). Drains queued watch events and
 * waits at most MGR_INDEX_WAIT_MS. 0 with *out (valid until the loop runs
 * again), -EAGAIN when the index is loading or its watch failed (the
 * caller counts in etcd), -ETIMEDOUT when it did not catch up in time
 * (the index then reads etcd again, as after a failed watch). */
CN_MUST_CHECK int mgr_index_at(struct manager *m, int64_t rev,
			       const struct mgr_index **out);

#endif
