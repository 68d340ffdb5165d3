/* canopy-agent: VmCommand from the manager: decode, validate, act; DELETE,
 * answers (CommandResult) and the life of an op. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	rc = agent_dir_remove(vm->dir);
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
		agent_create_start(ag, rid, cmd);
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
	if (vm->op || vm->op_call || agent_migrate_busy(vm)) {
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
