/* vMotion source: an in-doubt outcome after COMMIT and migrate_resolve. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

#include "host/vmm/blk_ds.h"
#include "host/vmm/migrate.h"
#include "host/vmm/migrate_src.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "proto/canopy_vmm.pb-c.h"

void migrate_doubt_enter(struct migrate *m, Canopy__V1__VmmMigrateResult *res)
{
	struct vm *vm = m->vm;
	char msg[512];

	migrate_src_phase_set(m, "in_doubt");
	pthread_mutex_lock(&m->lock);
	snprintf(m->error, sizeof(m->error), "%s", m->doubt);
	pthread_mutex_unlock(&m->lock);
	res->in_doubt = 1;
	res->in_doubt_reason = m->doubt;
	log_error("vmm", "migration in doubt",
		  "vm=%s to=%s why=\"%s\" action=\"the VM stays paused here "
		  "until migrate_resolve\"",
		  vm->cfg.name, m->address, m->doubt);
	snprintf(msg, sizeof(msg),
		 "migration in doubt: %.200s; the VM stays paused here until "
		 "migrate_resolve (resume=true only once the destination's "
		 "receiver has exited without running it)",
		 m->doubt);
	control_migrate_done(vm, -EIO, msg, res);
}

int migrate_in_doubt(struct vm *vm)
{
	return vm->mig && vm->mig->in_doubt;
}

/* Resolver thread: the datastore locks back (up to BLK_DS_RECLAIM_MS),
 * then the vCPUs and devices run again; or, without the locks, nothing
 * runs (the VM stays paused and in doubt). */
static void *resolver_main(void *arg);

/* I/O thread, after resolver_main: reply and leave or keep the doubt. */
static void on_resumed(void *arg)
{
	struct migrate *m = arg;
	struct vm *vm = m->vm;
	char msg[512];

	if (m->resolver_on)
		pthread_join(m->resolver, NULL);
	m->resolver_on = 0;
	m->resolving = 0;
	if (m->resolve_rc < 0) {
		snprintf(msg, sizeof(msg),
			 "migrate_resolve: cannot take back the datastore "
			 "disks: %s; the VM stays paused here, in doubt",
			 m->resolve_why);
		log_error("vmm", "in-doubt migration not resumed",
			  "vm=%s why=\"%s\"", vm->cfg.name, m->resolve_why);
		control_migrate_done(vm, m->resolve_rc, msg, NULL);
		return;
	}
	m->in_doubt = 0;
	migrate_src_phase_set(m, "failed");
	pthread_mutex_lock(&m->lock);
	snprintf(m->error, sizeof(m->error),
		 "%.200s; resumed on this host (migrate_resolve)", m->doubt);
	pthread_mutex_unlock(&m->lock);
	log_info("vmm", "in-doubt migration resolved: resumed here",
		 "vm=%s to=%s", vm->cfg.name, m->address);
	/* A guest request that came before the pause waited for us. */
	if (migrate_src_request_pending(vm) && eventfd_write(vm->event_fd, 1))
		log_error("vmm", "eventfd write failed", "vm=%s", vm->cfg.name);
	control_migrate_done(vm, 0, "", NULL);
}

static void *resolver_main(void *arg)
{
	struct migrate *m = arg;
	struct vm *vm = m->vm;

	m->resolve_rc =
		blk_ds_handover_reclaim(m->resolve_why, sizeof(m->resolve_why));
	if (m->resolve_rc == 0) {
		(void)!dirty_log_stop(vm);
		migrate_src_resume_guest(vm);
	}
	if (loop_post(vm->loop, on_resumed, m) < 0)
		log_error("vmm", "migrate_resolve result lost", "vm=%s",
			  vm->cfg.name);
	return NULL;
}

/* I/O thread: the destination runs the VM; this VMM ends as migrated. */
static void on_migrated(void *arg)
{
	struct migrate *m = arg;
	struct vm *vm = m->vm;

	m->resolving = 0;
	m->in_doubt = 0;
	migrate_src_phase_set(m, "completed");
	log_info("vmm", "migrated",
		 "vm=%s to=%s resolved=\"the destination runs the VM\"",
		 vm->cfg.name, m->address);
	control_migrate_done(vm, 0, "", NULL);
	vmm_finish(vm, VMM_EXIT_OK, "migrated");
}

/* I/O thread: an operator chose to power the VM off here (the
 * destination may have run it: old memory must not run again). */
static void on_powered_off(void *arg)
{
	struct migrate *m = arg;
	struct vm *vm = m->vm;

	m->resolving = 0;
	m->in_doubt = 0;
	migrate_src_phase_set(m, "failed");
	pthread_mutex_lock(&m->lock);
	snprintf(m->error, sizeof(m->error),
		 "%.200s; powered off here (migrate_resolve)", m->doubt);
	pthread_mutex_unlock(&m->lock);
	log_warn("vmm", "in-doubt migration resolved: powered off here",
		 "vm=%s to=%s", vm->cfg.name, m->address);
	control_migrate_done(vm, 0, "", NULL);
	vmm_finish(vm, VMM_EXIT_OK,
		   "powered off: the in-doubt migration was resolved by "
		   "powering the vm off (migrate_resolve)");
}

int migrate_resolve_start(struct vm *vm, int resume, int power_off, char *msg,
			  size_t msglen)
{
	struct migrate *m = vm->mig;
	int rc;

	if (resume && power_off) {
		snprintf(msg, msglen,
			 "migrate_resolve: resume and power_off together; "
			 "choose one; nothing changed");
		return -EINVAL;
	}
	if (!m || !m->in_doubt) {
		snprintf(msg, msglen,
			 "migrate_resolve: no migration is in doubt here "
			 "(%s); nothing changed",
			 m ? m->phase : "no migration ran");
		return -EBUSY;
	}
	if (m->resolving) {
		snprintf(msg, msglen,
			 "migrate_resolve: a resolution is already under way");
		return -EALREADY;
	}
	m->resolving = 1;
	log_info("vmm", "migrate_resolve", "vm=%s resume=%d power_off=%d",
		 vm->cfg.name, resume, power_off);
	if (resume) {
		rc = -pthread_create(&m->resolver, NULL, resolver_main, m);
		m->resolver_on = rc == 0;
	} else
		rc = loop_post(vm->loop,
			       power_off ? on_powered_off : on_migrated, m);
	if (rc < 0) {
		m->resolving = 0;
		snprintf(msg, msglen, "migrate_resolve: %s", strerror(-rc));
	}
	return rc;
}

void migrate_doubt_join(struct vm *vm)
{
	struct migrate *m = vm->mig;

	if (m && m->resolver_on) {
		pthread_join(m->resolver, NULL);
		m->resolver_on = 0;
	}
}
