/* canopy-managerd: VmService handlers (create, list, get, power, delete). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/list.h"
#include "manager/manager.h"

int mgr_vm_read(struct manager *m, struct api_call *c, const char *name,
		Canopy__V1__Vm **out)
{
	char key[MGR_KEY_MAX];
	int rc;

	*out = NULL;
	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, name)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "'%.64s' is not a vm name: use 1 to 63 characters of "
			 "a-z, 0-9 and '-'",
			 name);
		return 1;
	}
	rc = mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			 (ProtobufCMessage **)out);
	if (rc == -ENOENT)
		api_fail(c, CN_NOT_FOUND,
			 "vm %s does not exist; list vms with 'canopy vm list'",
			 name);
	else if (rc)
		mgr_fail_store(m, c, rc, "reading the vm");
	return rc;
}

/* The host a new VM goes to; answers c and returns NULL on failure. */
static struct mgr_host *place(struct manager *m, struct api_call *c,
			      const char *want)
{
	struct mgr_host *h;

	if (!want || !*want) {
		h = mgr_host_pick(m);
		if (!h)
			api_fail(c, CN_UNAVAILABLE,
				 "no host is connected; start canopy-agent on "
				 "a host, or wait for one to reconnect");
		return h;
	}
	if (!mgr_name_valid(MGR_NAME_HOST, want)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "'%.64s' is not a host id; list hosts with 'canopy "
			 "host list'",
			 want);
		return NULL;
	}
	h = mgr_host_find(m, want);
	if (!h)
		api_fail(c, CN_NOT_FOUND,
			 "host %s is not known; list hosts with 'canopy host "
			 "list'",
			 want);
	else if (!h->up ||
		 h->rec->state != CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED)
		api_fail(c, CN_UNAVAILABLE,
			 "host %s is disconnected; pick another host or wait "
			 "for it to reconnect",
			 want);
	else
		return h;
	return NULL;
}

static void reply_task(struct manager *m, struct api_call *c, int rc,
		       Canopy__V1__Task *task, const char *vm)
{
	if (rc == -EEXIST)
		api_fail(c, CN_ALREADY_EXISTS,
			 "vm %s already exists; pick another name or delete "
			 "it first",
			 vm);
	else if (rc)
		mgr_fail_store(m, c, rc, "storing the task");
	else
		api_reply(c, &task->base);
	if (task)
		canopy__v1__task__free_unpacked(task, NULL);
}

void api_create_vm(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__CreateVmRequest *req = (const void *)r;
	Canopy__V1__Vm vm = CANOPY__V1__VM__INIT;
	struct manager *m = arg;
	Canopy__V1__Task *task = NULL;
	struct mgr_host *h;
	char why[256];
	int rc;

	if (mgr_spec_check(req->spec, why, sizeof(why))) {
		api_fail(c, CN_INVALID_ARGUMENT, "%s", why);
		return;
	}
	h = place(m, c, req->host);
	if (!h)
		return;
	vm.id = req->spec->name;
	vm.spec = req->spec;
	vm.desired = CANOPY__V1__POWER_STATE__POWER_STATE_OFF;
	vm.host = h->rec->id;
	vm.created_unix_ms = mgr_unix_ms();
	rc = mgr_task_submit(m, MGR_OP_CREATE, &vm, 0, 0, vm.desired, &task);
	reply_task(m, c, rc, task, vm.id);
}

/* Start, stop, pause, resume or delete: checks, then a task. */
static void power(struct manager *m, struct api_call *c, const char *name,
		  enum mgr_op op, int hard, uint32_t timeout_ms)
{
	Canopy__V1__Task *task = NULL;
	Canopy__V1__PowerState prev;
	Canopy__V1__Vm *vm;
	struct mgr_host *h;
	char why[256];
	int rc;

	if (mgr_vm_read(m, c, name, &vm))
		return;
	if (mgr_op_check(op, vm->id, vm->desired, vm->state, why,
			 sizeof(why)) != CN_OK) {
		api_fail(c, CN_FAILED_PRECONDITION, "%s", why);
		goto out;
	}
	h = mgr_host_find(m, vm->host);
	if (!h || !h->up) {
		api_fail(c, CN_UNAVAILABLE,
			 "vm %s is on host %s, which is disconnected; wait for "
			 "the host to reconnect",
			 vm->id, vm->host);
		goto out;
	}
	prev = vm->desired;
	if (op != MGR_OP_DELETE)
		vm->desired = mgr_op_desired(op);
	rc = mgr_task_submit(m, op, vm, hard, timeout_ms, prev, &task);
	reply_task(m, c, rc, task, vm->id);
out:
	canopy__v1__vm__free_unpacked(vm, NULL);
}

#define POWER_HANDLER(fn, op)                                             \
	void fn(void *arg, struct api_call *c, const ProtobufCMessage *r) \
	{                                                                 \
		const Canopy__V1__VmPowerRequest *req = (const void *)r;  \
		power(arg, c, req->name, op, req->hard, req->timeout_ms); \
	}

POWER_HANDLER(api_start_vm, MGR_OP_START)
POWER_HANDLER(api_stop_vm, MGR_OP_STOP)
POWER_HANDLER(api_pause_vm, MGR_OP_PAUSE)
POWER_HANDLER(api_resume_vm, MGR_OP_RESUME)

void api_delete_vm(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__DeleteVmRequest *req = (const void *)r;

	power(arg, c, req->name, MGR_OP_DELETE, 0, 0);
}

void api_get_vm(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__GetVmRequest *req = (const void *)r;
	Canopy__V1__Vm *vm;

	if (mgr_vm_read(arg, c, req->name, &vm))
		return;
	api_reply(c, &vm->base);
	canopy__v1__vm__free_unpacked(vm, NULL);
}

/* The names of one page of VMs (all, or those placed on host). */
static int page_names(struct manager *m, const Canopy__V1__ListVmsRequest *req,
		      struct etcd_kvs **kvs, size_t *n, const char ***names,
		      char *next)
{
	char prefix[MGR_KEY_MAX];
	const char *p = MGR_PREFIX_VMS;
	size_t i;
	int rc;

	if (req->host && *req->host) {
		rc = mgr_key_placement(prefix, sizeof(prefix), req->host, NULL);
		if (rc)
			return rc;
		p = prefix;
	}
	rc = mgr_list_page(m, p, MGR_NAME_VM, req->page_token,
			   mgr_page_size(req->page_size), true, kvs, n, next);
	if (rc)
		return rc;
	*names = calloc(*n ? *n : 1, sizeof(char *));
	if (!*names)
		return -ENOMEM;
	for (i = 0; i < *n; i++)
		(*names)[i] = mgr_key_name((*kvs)->kvs[i].key, p);
	return 0;
}

void api_list_vms(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ListVmsRequest *req = (const void *)r;
	Canopy__V1__ListVmsResponse resp = CANOPY__V1__LIST_VMS_RESPONSE__INIT;
	struct manager *m = arg;
	struct etcd_kvs *kvs = NULL;
	Canopy__V1__Vm **vms = NULL;
	const char **names = NULL;
	char next[MGR_KEY_MAX];
	size_t n = 0, i, k = 0;
	int rc;

	if (req->host && *req->host &&
	    !mgr_name_valid(MGR_NAME_HOST, req->host)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "'%.64s' is not a host id; list hosts with 'canopy "
			 "host list'",
			 req->host);
		return;
	}
	rc = page_names(m, req, &kvs, &n, &names, next);
	if (!rc && !(vms = calloc(n ? n : 1, sizeof(*vms))))
		rc = -ENOMEM;
	if (!rc)
		rc = mgr_get_many(m, MGR_PREFIX_VMS, names, n,
				  &canopy__v1__vm__descriptor,
				  (ProtobufCMessage **)vms);
	if (rc == -EINVAL)
		mgr_fail_token(c);
	else if (rc)
		mgr_fail_store(m, c, rc, "listing vms");
	if (rc)
		goto out;
	for (i = 0; i < n; i++) /* skip VMs deleted since the index read */
		if (vms[i])
			vms[k++] = vms[i];
	resp.n_vms = k;
	resp.vms = vms;
	resp.next_page_token = next;
	api_reply(c, &resp.base);
out:
	for (i = 0; vms && i < (rc ? n : k); i++)
		if (vms[i])
			canopy__v1__vm__free_unpacked(vms[i], NULL);
	free(vms);
	free(names);
	etcd_kvs_free(kvs);
}
