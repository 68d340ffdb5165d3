/*
 * canopy-managerd: vMotion orchestration (migrate.c: the vm.migrate task;
 * api_migrate.c: MigrateVm admission). docs/manager.md, "vMotion". Loop
 * thread only, leader only.
 */
#ifndef CANOPY_MANAGER_MIGRATE_H
#define CANOPY_MANAGER_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/bus.h"

#include "manager/manager.h"

struct mgr_task;

/* How long the destination agent may take to listen, and how long a task
 * whose outcome is unknown (source agent lost, manager failover) waits for
 * the agents' reports before it fails asking to check both hosts. */
#define MGR_MIGRATE_PREPARE_MS 15000
#define MGR_MIGRATE_RESOLVE_MS 60000
/* In doubt (the source wrote COMMIT, the destination never confirmed):
 * how often the destination is asked whether it has the VM, how long the
 * source's resolve may take (its VMM may wait 60 s for the datastore
 * locks), and the bound after which the task fails naming both hosts
 * (the VM stays paused on the source). */
#define MGR_MIGRATE_PROBE_MS 1000
#define MGR_MIGRATE_RESOLVE_CALL_MS 90000
#define MGR_MIGRATE_DOUBT_MS (10u * 60 * 1000)
/* The longest a migration may stream before the manager gives up
 * waiting for the source's verdict and resolves by reports. */
#define MGR_MIGRATE_SEND_MS (6u * 60 * 1000)

/* Record vm name as running on host dst (its host, placement and running
 * keys in one fenced txn; nothing if it is there already). 0 or -errno. */
CN_MUST_CHECK int mgr_migrate_record_move(struct manager *m, const char *name,
					  const char *dst);
/* An in-doubt migration without a task counts as one for an operator
 * while its source said so within this long (it repeats every 5 s). */
#define MGR_MIGRATE_SEEN_MS 15000

/* MigrateResolve {name, task_id, resume, power_off} to host src; cb(arg)
 * gets the answer (cb NULL: logged only). 0 or -errno (not sent). */
CN_MUST_CHECK int mgr_migrate_resolve_send(struct manager *m, const char *src,
					   const char *name,
					   const char *task_id, bool resume,
					   bool power_off, bus_reply_fn cb,
					   void *arg);
/* The running vm.migrate task of vm if it is in doubt and not held: 1
 * with its source, destination and task id (MGR_KEY_MAX bytes each),
 * else 0. */
int mgr_migrate_doubt_find(struct manager *m, const char *vm, char *src,
			   char *dst, char *task_id);
/* Hold (true) or release the in-doubt task of vm: while held it neither
 * probes nor acts on reports (an operator's resolution decides). */
void mgr_migrate_doubt_hold(struct manager *m, const char *vm, bool hold);
/* End the in-doubt task of vm, if any, FAILED (ABORTED) with msg. */
void mgr_migrate_doubt_end(struct manager *m, const char *vm, const char *msg);
/* migrate_orphan.c: an in-doubt migration of vm whose task has ended and
 * whose source said so within MGR_MIGRATE_SEEN_MS: 1 with its source and
 * destination (MGR_KEY_MAX bytes each), else 0. */
int mgr_migrate_orphan_find(struct manager *m, const char *vm, char *src,
			    char *dst);
/* Forget that (it was resolved). */
void mgr_migrate_orphan_forget(struct manager *m, const char *vm);
/* migrate_orphan.c: an in-doubt MigrateDone from host src whose task has
 * ended (the agent repeats it while in doubt): ask the destination it
 * names and resolve as a task would (the VM on dst: record the move and
 * stop src as migrated; no receiver there: resume on src; else wait for
 * the next repeat). */
void mgr_migrate_orphan(struct manager *m, const char *src,
			const Canopy__V1__MigrateDone *d);
/* Attach the migration (to host dst, limits) to the queued task t that
 * MigrateVm just submitted and record it in the task. 0 or -ENOMEM. */
CN_MUST_CHECK int mgr_migrate_attach(struct mgr_task *t, const char *dst,
				     uint32_t max_downtime_ms,
				     uint64_t bandwidth_mib_s,
				     uint64_t memory_mib);
/* Start the task (mgr_tasks_kick): ask the destination to listen. */
void mgr_migrate_start(struct mgr_task *t);
/* Free t's migration (the task is being freed). */
void mgr_migrate_forget(struct mgr_task *t);
/* Migrations running with host as source or destination. */
unsigned mgr_migrate_count(struct manager *m, const char *host);
/* Bus one-way messages from host. */
void mgr_migrate_on_progress(struct manager *m, const char *host,
			     const Canopy__V1__MigrateProgress *p);
void mgr_migrate_on_done(struct manager *m, const char *host,
			 const Canopy__V1__MigrateDone *d);
/* A VM state report from host: resolves a migration whose outcome is
 * unknown (the destination runs the VM: committed; the source runs it:
 * failed). */
void mgr_migrate_on_report(struct manager *m, const char *host,
			   const Canopy__V1__VmStateReport *r);
/* host disconnected: a migration whose source it is waits for reports
 * instead of guessing; one whose destination it is and that has not
 * started streaming fails. */
void mgr_migrate_host_down(struct manager *m, const char *host);
/* CancelTask for id: 1 when id is a running vm.migrate task (c
 * answered), else 0. */
int mgr_migrate_cancel(struct manager *m, struct api_call *c, const char *id);
/* A new leader found rec unfinished: 1 when it is a vm.migrate task taken
 * over to be resolved from the agents' reports, else 0. */
int mgr_migrate_recover(struct manager *m, const Canopy__V1__Task *rec);
/* MigrateVm handler (api_migrate.c). */
void api_migrate_vm(void *arg, struct api_call *c, const ProtobufCMessage *r);
/* migrate_resolve.c: is an operator's vm.resolve_migration task of vm
 * running (it alone decides the doubt meanwhile)? */
bool mgr_migrate_resolving(struct manager *m, const char *vm);
/* ResolveMigration handler (migrate_resolve.c): a vm.resolve_migration
 * task ends an in-doubt migration as the operator chose. */
void api_resolve_migration(void *arg, struct api_call *c,
			   const ProtobufCMessage *r);

#endif
