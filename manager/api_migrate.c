/* canopy-managerd: MigrateVm: admission checks, then a vm.migrate task. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/migrate.h"
#include "manager/tasks.h"
#include "vmotion/orch.h"

/* The datastores of vm's disks (into a) and how many are local. */
static void disks_of(const Canopy__V1__Vm *vm, struct vmo_admit *a,
		     char names[VMO_DISKS_MAX][MGR_KEY_MAX])
{
	const Canopy__V1__VmSpec *s = vm->spec;
	const char *colon;
	size_t len;

	for (size_t i = 0; s && i < s->n_disks; i++) {
		const char *p = s->disks[i]->path ? s->disks[i]->path : "";

		colon = strchr(p, ':');
		if (!colon || p[0] == '/' || a->n_datastores >= VMO_DISKS_MAX) {
			a->n_local_disks++;
			continue;
		}
		len = CN_MIN((size_t)(colon - p), (size_t)MGR_KEY_MAX - 1);
		memcpy(names[a->n_datastores], p, len);
		names[a->n_datastores][len] = '\0';
		a->datastores[a->n_datastores] = names[a->n_datastores];
		a->n_datastores++;
	}
}

static void hosts_of(struct manager *m, const Canopy__V1__Vm *vm,
		     struct vmo_admit *a)
{
	struct mgr_host *s = mgr_host_find(m, vm->host);
	struct mgr_host *d = a->dst_valid_name ? mgr_host_find(m, a->dst) :
						 NULL;

	a->src_connected = s && s->up &&
			   s->rec->state ==
				   CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED;
	if (s) {
		a->src_cpu = s->rec->cpu_features;
		a->n_src_cpu = s->rec->n_cpu_features;
	}
	a->dst_known = d != NULL;
	if (!d)
		return;
	a->dst_cpu = d->rec->cpu_features;
	a->n_dst_cpu = d->rec->n_cpu_features;
	a->dst_connected =
		d->up &&
		d->rec->state !=
			CANOPY__V1__HOST_STATE__HOST_STATE_DISCONNECTED;
	a->dst_maintenance = d->rec->state ==
			     CANOPY__V1__HOST_STATE__HOST_STATE_MAINTENANCE;
	a->dst_free_mib = d->rec->memory_mib > d->rec->memory_used_mib ?
				  d->rec->memory_mib - d->rec->memory_used_mib :
				  0;
	a->dst_datastores = (const char *const *)d->rec->datastores;
	a->n_dst_datastores = d->rec->n_datastores;
	a->src_active = mgr_migrate_count(m, vm->host);
	a->dst_active = mgr_migrate_count(m, a->dst);
}

static struct mgr_task *task_of(struct manager *m, const char *id)
{
	for (struct mgr_task *t = m->tasks; t; t = t->next)
		if (strcmp(t->rec->id, id) == 0)
			return t;
	return NULL;
}

void api_migrate_vm(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__MigrateVmRequest *req = (const void *)r;
	char names[VMO_DISKS_MAX][MGR_KEY_MAX], why[512];
	struct vmo_admit a = { 0 };
	struct manager *m = arg;
	Canopy__V1__Task *task = NULL;
	Canopy__V1__Vm *vm;
	struct mgr_task *t;
	enum cn_code code;
	int rc;

	if (mgr_vm_read(m, c, req->name, &vm))
		return;
	a.vm = vm->id;
	a.vm_running = vm->state ==
			       CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING &&
		       vm->desired == CANOPY__V1__POWER_STATE__POWER_STATE_ON;
	a.vm_busy = mgr_vm_busy(m, vm->id);
	a.vm_memory_mib = vm->spec ? vm->spec->memory_mib : 0;
	a.src = vm->host;
	a.dst = req->to_host ? req->to_host : "";
	a.dst_valid_name = mgr_name_valid(MGR_NAME_HOST, a.dst);
	a.host_limit = m->opt.migrations_per_host;
	a.max_downtime_ms = req->max_downtime_ms;
	disks_of(vm, &a, names);
	hosts_of(m, vm, &a);
	code = vmo_admit_check(&a, why, sizeof(why));
	if (code != CN_OK) {
		api_fail(c, code, "%s", why);
		goto out;
	}
	rc = mgr_task_submit(m, MGR_OP_MIGRATE, vm, 0, 0, vm->desired, &task);
	t = rc ? NULL : task_of(m, task->id);
	if (!rc && !t)
		rc = -ENOENT; /* ended already (cannot happen before kick) */
	if (!rc)
		rc = mgr_migrate_attach(t, a.dst, req->max_downtime_ms,
					req->bandwidth_limit_mib_s,
					a.vm_memory_mib);
	if (rc) {
		if (t)
			mgr_task_end(t, CN_INTERNAL,
				     "the migration could not be set up");
		mgr_fail_store(m, c, rc, "storing the task");
	} else {
		canopy__v1__task__free_unpacked(task, NULL);
		task = mgr_task_copy(t->rec);
		if (task)
			api_reply(c, &task->base);
		else
			api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
	}
	if (task)
		canopy__v1__task__free_unpacked(task, NULL);
out:
	canopy__v1__vm__free_unpacked(vm, NULL);
}
