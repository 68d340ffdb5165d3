/* canopy-agent: VmCommand from the manager: decode, validate, act; CREATE
 * and DELETE, answers (CommandResult) and the life of an op. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

void agent_reply(struct agent *ag, uint64_t reply_id, int code,
		 const char *text)
{
	Canopy__V1__Envelope req = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope rep = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	int rc;

	st.code = code;
	st.message = (char *)(text ? text : "");
	res.status = &st;
	rep.body_case = CANOPY__V1__ENVELOPE__BODY_RESULT;
	rep.result = &res;
	req.request_id = reply_id;
	rc = bus_client_reply(ag->bus, &req, &rep);
	if (rc < 0)
		log_warn("agent", "reply not sent", "request=%llu err=\"%s\"",
			 (unsigned long long)reply_id, cn_strerror(rc));
}

void agent_op_finish(struct agent *ag, struct agent_vm *vm, int code,
		     const char *text)
{
	struct agent_op *op = vm->op;

	if (vm->op_timer)
		(void)loop_timer_del(ag->loop, vm->op_timer);
	vm->op_timer = 0;
	vmmctl_call_cancel(vm->op_call);
	vm->op_call = NULL;
	vm->op = NULL;
	if (!op)
		return;
	if (op->reply_id)
		agent_reply(ag, op->reply_id, code, text);
	log_info("agent", "command done", "vm=%s action=%d code=%s msg=\"%s\"",
		 vm->id, (int)op->action, cn_code_name((enum cn_code)code),
		 text ? text : "");
	free(op);
}

/* Create (sparse, O_EXCL) the disks given with a size; undo on error. */
static int disks_create(const char *dir, const Canopy__V1__VmSpec *spec,
			char *msg, size_t len)
{
	char path[AGENT_PATH_MAX + 320];
	size_t i;
	int rc = 0, fd;

	for (i = 0; i < spec->n_disks; i++) {
		const Canopy__V1__DiskSpec *d = spec->disks[i];

		if (!d->size_bytes)
			continue;
		rc = agent_disk_path(dir, d, path, sizeof(path));
		fd = rc < 0 ? rc :
			      sys_open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0) {
			rc = fd;
			snprintf(msg, len,
				 "cannot create disk %zu (%.300s): %s%s", i,
				 path, cn_strerror(rc),
				 rc == -EEXIST ? "; give size 0 to use the "
						 "existing file, or delete it" :
						 "");
			break;
		}
		if (ftruncate(fd, (off_t)d->size_bytes) < 0) {
			rc = -errno;
			snprintf(msg, len, "cannot size disk %zu (%.300s): %s",
				 i, path, cn_strerror(rc));
		}
		sys_close(fd);
		if (rc < 0) {
			(void)unlink(path);
			break;
		}
	}
	while (rc < 0 && i-- > 0) {
		if (spec->disks[i]->size_bytes &&
		    agent_disk_path(dir, spec->disks[i], path, sizeof(path)) ==
			    0)
			(void)unlink(path);
	}
	return rc;
}

/* Remove a VM directory: its files (no subdirectories are made), then it. */
static int dir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && !rc)
			rc = -errno;
	}
	closedir(d);
	if (rmdir(dir) < 0 && !rc)
		rc = -errno;
	return rc;
}

/* Our own copy of a spec (the envelope's belongs to the bus), or NULL. */
static Canopy__V1__VmSpec *spec_copy(const Canopy__V1__VmSpec *spec)
{
	size_t n = canopy__v1__vm_spec__get_packed_size(spec);
	uint8_t *buf = malloc(n ? n : 1);
	Canopy__V1__VmSpec *copy;

	if (!buf)
		return NULL;
	canopy__v1__vm_spec__pack(spec, buf);
	copy = canopy__v1__vm_spec__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

static void do_create(struct agent *ag, uint64_t rid,
		      const Canopy__V1__VmCommand *cmd)
{
	char dir[AGENT_PATH_MAX + 80], path[AGENT_PATH_MAX + 96], msg[512];
	Canopy__V1__VmSpec *copy = NULL;
	struct agent_vm *vm;
	int rc = agent_spec_check(cmd->spec, msg, sizeof(msg));

	if (rc < 0)
		goto fail;
	snprintf(dir, sizeof(dir), "%s/%s", ag->vms_dir, cmd->vm_id);
	if (agent_vm_find(ag, cmd->vm_id) || mkdir(dir, 0700) < 0) {
		rc = agent_vm_find(ag, cmd->vm_id) ? -EEXIST : -errno;
		snprintf(msg, sizeof(msg), "VM %s %s", cmd->vm_id,
			 rc == -EEXIST ? "already exists on this host; delete "
					 "it first or use another id" :
					 cn_strerror(rc));
		goto fail;
	}
	copy = spec_copy(cmd->spec);
	rc = copy ? disks_create(dir, copy, msg, sizeof(msg)) : -ENOMEM;
	if (rc < 0)
		goto fail_dir;
	snprintf(path, sizeof(path), "%s/%s", dir, AGENT_SPEC_FILE);
	rc = agent_spec_save(path, copy);
	rc = rc ?: agent_vm_add(ag, cmd->vm_id, copy, &vm);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "cannot store the spec of %s: %s",
			 cmd->vm_id, cn_strerror(rc));
		goto fail_disks;
	}
	log_info("agent", "vm created", "vm=%s", vm->id);
	agent_reply(ag, rid, CN_OK, "");
	agent_vm_report(ag, vm);
	return;

fail_disks:
	for (size_t i = 0; i < copy->n_disks; i++)
		if (copy->disks[i]->size_bytes &&
		    agent_disk_path(dir, copy->disks[i], path, sizeof(path)) ==
			    0)
			(void)unlink(path);
fail_dir:
	if (copy)
		canopy__v1__vm_spec__free_unpacked(copy, NULL);
	(void)dir_remove(dir);
	if (rc == -ENOMEM)
		snprintf(msg, sizeof(msg), "out of memory");
fail:
	agent_reply(ag, rid, cn_code_from_errno(rc), msg);
}

static void do_delete(struct agent *ag, uint64_t rid, struct agent_vm *vm)
{
	char msg[512];
	int rc;

	if (agent_vm_active(vm)) {
		snprintf(msg, sizeof(msg),
			 "VM %s is running (pid %d); stop it first", vm->id,
			 (int)vm->pid);
		agent_reply(ag, rid, CN_FAILED_PRECONDITION, msg);
		return;
	}
	rc = dir_remove(vm->dir);
	if (rc < 0 && rc != -ENOENT) {
		snprintf(msg, sizeof(msg), "cannot remove %.300s: %s", vm->dir,
			 cn_strerror(rc));
		agent_reply(ag, rid, cn_code_from_errno(rc), msg);
		return;
	}
	log_info("agent", "vm deleted", "vm=%s", vm->id);
	agent_vm_free(ag, vm);
	agent_reply(ag, rid, CN_OK, "");
}

/* Start an op on vm for a power command; the power functions answer. */
static void power(struct agent *ag, uint64_t rid,
		  const Canopy__V1__VmCommand *cmd, struct agent_vm *vm)
{
	struct agent_op *op = calloc(1, sizeof(*op));

	if (!op) {
		agent_reply(ag, rid, CN_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	op->action = cmd->action;
	op->reply_id = rid;
	op->timeout_ms = CN_MIN(cmd->timeout_ms, AGENT_OP_TIMEOUT_MS_MAX);
	vm->op = op;
	switch (cmd->action) {
	case CANOPY__V1__VM_ACTION__VM_ACTION_START:
		agent_power_start(ag, vm);
		break;
	case CANOPY__V1__VM_ACTION__VM_ACTION_STOP:
	case CANOPY__V1__VM_ACTION__VM_ACTION_STOP_HARD:
		agent_power_stop(
			ag, vm,
			cmd->action ==
				CANOPY__V1__VM_ACTION__VM_ACTION_STOP_HARD);
		break;
	default:
		agent_power_pause(
			ag, vm,
			cmd->action == CANOPY__V1__VM_ACTION__VM_ACTION_PAUSE);
		break;
	}
}

static void bad(struct agent *ag, uint64_t rid, int code, const char *msg)
{
	if (agent_bad_log_ok(ag))
		log_warn("agent", "command refused", "request=%llu msg=\"%s\"",
			 (unsigned long long)rid, msg);
	agent_reply(ag, rid, code, msg);
}

void agent_command_handle(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__VmCommand *cmd = env->vm_command;
	uint64_t rid = env->request_id;
	struct agent_vm *vm;
	char msg[512];

	/* validate */
	if (agent_vm_id_check(cmd->vm_id, msg, sizeof(msg)) < 0) {
		bad(ag, rid, CN_INVALID_ARGUMENT, msg);
		return;
	}
	if (cmd->action < CANOPY__V1__VM_ACTION__VM_ACTION_CREATE ||
	    cmd->action > CANOPY__V1__VM_ACTION__VM_ACTION_DELETE) {
		snprintf(msg, sizeof(msg),
			 "unknown VM action %d; use CREATE, START, STOP, "
			 "STOP_HARD, PAUSE, RESUME or DELETE",
			 (int)cmd->action);
		bad(ag, rid, CN_INVALID_ARGUMENT, msg);
		return;
	}
	/* act */
	if (cmd->action == CANOPY__V1__VM_ACTION__VM_ACTION_CREATE) {
		do_create(ag, rid, cmd);
		return;
	}
	vm = agent_vm_find(ag, cmd->vm_id);
	if (!vm) {
		snprintf(msg, sizeof(msg),
			 "VM %s does not exist on this host; create it first",
			 cmd->vm_id);
		bad(ag, rid, CN_NOT_FOUND, msg);
		return;
	}
	if (vm->op || vm->op_call) {
		snprintf(msg, sizeof(msg),
			 "VM %s is busy with another command or its VMM is "
			 "being adopted; retry when that is done",
			 vm->id);
		bad(ag, rid, CN_ABORTED, msg);
		return;
	}
	if (cmd->action == CANOPY__V1__VM_ACTION__VM_ACTION_DELETE) {
		do_delete(ag, rid, vm);
		return;
	}
	power(ag, rid, cmd, vm);
}
