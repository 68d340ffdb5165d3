/*
 * The source's migration state, shared by migrate_send.c (the stream) and
 * migrate_doubt.c (an in-doubt outcome after COMMIT and migrate_resolve).
 * Private to those two files.
 */
#ifndef CANOPY_VMM_MIGRATE_SRC_H
#define CANOPY_VMM_MIGRATE_SRC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "host/vmm/migrate.h"
#include "host/vmm/vmm.h"

struct migrate {
	struct vm *vm;
	pthread_t thread, throttler;
	int throttler_on;
	_Atomic int stop_throttler;
	_Atomic int cancel;
	int running; /* the thread is yet to be joined (I/O thread) */
	/* The request. */
	char address[128];
	char tls_name[256]; /* the destination's name in its certificate */
	uint64_t target_ms, limit_bps;
	uint32_t max_rounds;
	uint64_t timeout_ms;
	/* Progress, under lock; read by status. */
	pthread_mutex_t lock;
	char phase[24];
	uint32_t round;
	uint64_t remaining, dirty_rate_bps, bw_bps, expect_ms;
	char error[256];
	/* Migration thread only, then the I/O thread after the join. */
	struct mig_conn conn;
	struct mig_header hdr;
	char devices[MIG_MAX_DEVICES];
	uint64_t pages, t0_ns, pause_ns, downtime_ms, total_ms, final_pages;
	uint64_t t_end; /* END written (ns) */
	uint64_t t_fetch; /* the last pre-copy dirty-log read (ns) */
	struct mig_timeline tl; /* the switchover, step by step */
	struct buf final; /* the state records of the switchover */
	int io_ms; /* wait for a peer's record */
	unsigned throttle_max; /* highest auto-converge level used */
	int rc, paused, committed;
	/* COMMIT written, STARTED not read: wait for migrate_resolve. */
	int in_doubt;
	int resolving; /* a migrate_resolve is being carried out */
	pthread_t resolver;
	int resolver_on; /* resolver is yet to be joined */
	char doubt[256]; /* why the outcome is in doubt */
	int resolve_rc; /* the resolver's result, and why it failed */
	char resolve_why[256];
};

/* Set the phase status shows (any thread). */
void migrate_src_phase_set(struct migrate *m, const char *phase);
/* A guest request (run.c on_request) waits for the I/O thread? */
int migrate_src_request_pending(struct vm *vm);
/* vm->state under vm->lock. */
void migrate_src_state_set(struct vm *vm, enum vm_state s);
/* A paused source runs its guest again: state RUNNING, devices resumed,
 * and the vCPUs too unless a guest request keeps them parked for the I/O
 * thread. */
void migrate_src_resume_guest(struct vm *vm);
/* After the migration thread is joined (I/O thread): COMMIT was written
 * and STARTED did not come. Keeps the VM paused, answers migrate_send with
 * the in-doubt result and waits for migrate_resolve. */
void migrate_doubt_enter(struct migrate *m,
			 struct Canopy__V1__VmmMigrateResult *res);

#endif
