/*
 * canopy-agent: one VM's migration state, shared by migrate.c (the
 * stream, both sides) and migrate_doubt.c (an in-doubt outcome: probe and
 * resolve). Private to those files; loop thread only.
 */
#ifndef CANOPY_AGENT_MIGRATE_MIG_H
#define CANOPY_AGENT_MIGRATE_MIG_H

#include <stdint.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"

struct agent_mig {
	int incoming; /* 1: destination side */
	int committed; /* source: the VMM answered success; its exit is
			* the end of the VM here */
	int exited; /* source: the VMM exited before its answer arrived */
	char task_id[64];
	uint64_t reply_id; /* destination: MigrateIncoming to answer */
	uint64_t deadline_ms; /* destination: listen line wait */
	uint64_t timer;
	struct vmmctl_call *call; /* source: migrate_send */
	struct vmmctl_call *poll; /* status (progress / run check) */
	char addr[80]; /* destination: what the source connects to */
	/* Source, in doubt (migrate_doubt.c): COMMIT sent, STARTED never
	 * came; the VMM holds the VM paused until MigrateResolve. */
	int in_doubt;
	char dst_host[AGENT_VM_ID_MAX + 1]; /* MigrateSend.dst_host_id */
	char doubt[512]; /* why, repeated in each in-doubt MigrateDone */
	int resolve_migrated; /* resume=false asked: its exit is the end */
	int resolve_power_off; /* power_off asked: its exit is a power-off */
	uint64_t resolve_rid; /* MigrateResolve to answer */
	struct vmmctl_call *resolve; /* migrate_resolve to the VMM */
};

/* Source: send MigrateDone (res may be NULL; in doubt: in_doubt and the
 * destination host are set). */
void agent_mig_send_done(struct agent *ag, struct agent_vm *vm, int code,
			 const char *text,
			 const Canopy__V1__VmmMigrateResult *res);
/* Source: the VMM answered in doubt (or was adopted so): keep the VM
 * MIGRATING, note the destination in the VM's directory (a restarted
 * agent reads it), tell the manager now and every 5 s until resolved. */
void agent_mig_doubt_enter(struct agent *ag, struct agent_vm *vm,
			   const char *why,
			   const Canopy__V1__VmmMigrateResult *res);
/* Source: remove the note agent_mig_doubt_enter left (resolved). */
void agent_mig_doubt_forget(const struct agent_vm *vm);
/* Destination: the receiving VMM's run marker in vm's directory (made
 * after COMMIT, before a vCPU runs: host/vmm/migrate_recv.c). */
#define AGENT_MIG_RAN_FILE "migrate-ran"

/* Free vm's migration state (timers and calls cancelled; a pending
 * MigrateResolve is answered ABORTED). */
void agent_mig_free(struct agent *ag, struct agent_vm *vm);

#endif
