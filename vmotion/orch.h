/*
 * vMotion orchestration, the pure part (docs/migration-protocol.md,
 * "Orchestration"): the admission checks of a migration, the task's stage
 * machine, and what its progress looks like (percent and a sentence). No
 * I/O, no state beyond the arguments: the manager calls it on its loop
 * thread, the unit tests anywhere.
 */
#ifndef CANOPY_VMOTION_ORCH_H
#define CANOPY_VMOTION_ORCH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "lib/err.h"

/* Default migrations per host, source or destination (vSphere on 1 GbE). */
#define VMO_HOST_LIMIT_DEFAULT 4
/* Largest downtime target a request may give (ms). */
#define VMO_MAX_DOWNTIME_MS_MAX 60000
/* Datastores one VM may use in an admission check. */
#define VMO_DISKS_MAX 16

/* What admission looks at; the caller fills it from its records. */
struct vmo_admit {
	const char *vm;
	int vm_running; /* run state RUNNING and desired ON */
	int vm_busy; /* another task of the VM is active */
	int n_local_disks; /* disks not on a datastore */
	const char *datastores[VMO_DISKS_MAX]; /* of its datastore disks */
	size_t n_datastores;
	uint64_t vm_memory_mib;
	const char *src; /* the VM's host */
	int src_connected;
	const char *dst; /* as asked */
	int dst_valid_name;
	int dst_known;
	int dst_connected;
	int dst_maintenance;
	uint64_t dst_free_mib; /* memory minus used */
	const char *const *dst_datastores;
	size_t n_dst_datastores;
	/* CPU feature registers as the hosts registered them: 0 values
	 * (not known: not compared) or MIG_CPU_FEATS (vmotion/stream.h). */
	const uint32_t *src_cpu, *dst_cpu;
	size_t n_src_cpu, n_dst_cpu;
	unsigned src_active, dst_active; /* migrations running on each */
	unsigned host_limit; /* 0: VMO_HOST_LIMIT_DEFAULT */
	uint32_t max_downtime_ms;
};

/*
 * Whether the migration may start: CN_OK, or the gRPC code of the first
 * failed check with one sentence in why (size n) saying what to do.
 * Order: downtime bound, destination name, VM state, busy, same host,
 * destination known/connected/maintenance, source connected, local
 * disks, datastores visible, CPU features, memory, concurrency limit.
 * CPU features: the source host's registers must all be in the
 * destination's (the receiving VMM's HEADER check, made early); not
 * compared when either host did not report them (the receiver still
 * checks before the source pauses).
 */
enum cn_code vmo_admit_check(const struct vmo_admit *a, char *why, size_t n);

/* Stages of a vm.migrate task. */
enum vmo_stage {
	VMO_QUEUED = 0,
	VMO_PREPARING, /* destination VMM being started */
	VMO_SENDING, /* the source streams (progress relayed) */
	VMO_COMMITTING, /* the source reported success: record the move */
	VMO_DONE,
	VMO_FAILED,
	VMO_CANCELLED,
	VMO_STAGE_COUNT,
};

enum vmo_event {
	VMO_EV_START = 0, /* the task runs: ask the destination */
	VMO_EV_READY, /* the destination listens */
	VMO_EV_DONE_OK, /* the source committed */
	VMO_EV_STORED, /* the manager recorded the new host */
	VMO_EV_FAIL, /* anything failed before commit */
	VMO_EV_CANCEL, /* a user cancelled before commit */
	VMO_EV_COUNT,
};

/* The stage after ev in stage: 0 with *next, or -EINVAL when ev cannot
 * happen there (the caller ignores it and logs). */
CN_MUST_CHECK int vmo_stage_next(enum vmo_stage stage, enum vmo_event ev,
				 enum vmo_stage *next);
/* Whether a cancel may still stop the migration: before commit, and the
 * source's stream (phase as MigrationProgress; NULL or "" before the
 * first report) has not reached stop-and-copy. */
int vmo_cancel_ok(enum vmo_stage stage, const char *phase);
const char *vmo_stage_name(enum vmo_stage stage);

/* The source's progress as relayed. */
struct vmo_progress {
	const char *phase;
	uint32_t round;
	uint64_t remaining_mib, dirty_rate_mib_s, expected_downtime_ms;
	uint64_t transferred_mib;
	uint32_t throttle_pct;
};

/* Task percent for progress of a VM of memory_mib: 10 when the stream
 * starts, up to 80 through round 1 (MiB sent over RAM), 80..90 over later
 * rounds, 92 at stop-and-copy, 95 at commit; never 100 (only success). */
uint32_t vmo_progress_pct(const struct vmo_progress *p, uint64_t memory_mib);
/* The task's phase sentence, e.g. "precopy round 3: 12 MiB remaining,
 * dirty 40 MiB/s, expected downtime 20 ms". Always NUL-terminated. */
void vmo_progress_text(const struct vmo_progress *p, char *buf, size_t n);

#endif
