/* canopy-agent: ConsoleInput from the manager, forwarded to the VM's VMM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "host/agent/agent.h"
#include "host/agent/spec.h"
#include "host/agent/vmmctl.h"
#include "lib/err.h"
#include "lib/log.h"

/* A ConsoleInput waiting for the VMM's answer. */
struct console_input {
	struct agent *ag;
	uint64_t rid;
	char vm_id[AGENT_VM_ID_MAX + 1];
};

static void refuse(struct agent *ag, uint64_t rid, int code, const char *msg)
{
	if (code == CN_INVALID_ARGUMENT && agent_bad_log_ok(ag))
		log_warn("agent", "console input refused",
			 "request=%llu msg=\"%s\"", (unsigned long long)rid,
			 msg);
	agent_reply(ag, rid, code, msg);
}

static void on_vmm(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct console_input *ci = arg;
	char msg[512];
	int code;

	if (status == -ETIMEDOUT) {
		snprintf(msg, sizeof(msg),
			 "the VMM of VM %s did not answer the console input; "
			 "check that it is running",
			 ci->vm_id);
		code = CN_DEADLINE_EXCEEDED;
	} else if (status < 0) { /* it exited meanwhile, most likely */
		snprintf(msg, sizeof(msg),
			 "the VMM of VM %s went away (%s): it is not running",
			 ci->vm_id, cn_strerror(status));
		code = CN_FAILED_PRECONDITION;
	} else {
		code = vmmctl_code(rep);
		msg[0] = 0;
		if (code)
			snprintf(msg, sizeof(msg), "VM %s: %.400s", ci->vm_id,
				 vmmctl_message(rep));
	}
	agent_reply(ci->ag, ci->rid, code, msg);
	free(ci);
}

/* Check the request; the VM when it may take input, else NULL (answered). */
static struct agent_vm *check(struct agent *ag, uint64_t rid,
			      const Canopy__V1__ConsoleInput *req)
{
	struct agent_vm *vm;
	char msg[512];

	if (agent_vm_id_check(req->vm_id, msg, sizeof(msg)) < 0) {
		refuse(ag, rid, CN_INVALID_ARGUMENT, msg);
		return NULL;
	}
	if (req->data.len > AGENT_CONSOLE_INPUT_MAX) {
		snprintf(msg, sizeof(msg),
			 "console input of %zu bytes; at most %u per request",
			 req->data.len, AGENT_CONSOLE_INPUT_MAX);
		refuse(ag, rid, CN_INVALID_ARGUMENT, msg);
		return NULL;
	}
	vm = agent_vm_find(ag, req->vm_id);
	if (!vm) {
		snprintf(msg, sizeof(msg),
			 "VM %s does not exist on this host; create it first",
			 req->vm_id);
		refuse(ag, rid, CN_NOT_FOUND, msg);
		return NULL;
	}
	if (!vm->pid ||
	    (vm->state != CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING &&
	     vm->state != CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED)) {
		snprintf(msg, sizeof(msg),
			 "VM %s is not running on this host; start it first",
			 vm->id);
		refuse(ag, rid, CN_FAILED_PRECONDITION, msg);
		return NULL;
	}
	return vm;
}

void agent_console_input_handle(struct agent *ag,
				const Canopy__V1__Envelope *env)
{
	const Canopy__V1__ConsoleInput *req = env->console_input;
	Canopy__V1__VmmRequest vr = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmConsoleInputRequest in =
		CANOPY__V1__VMM_CONSOLE_INPUT_REQUEST__INIT;
	struct vmmctl_call *call;
	struct console_input *ci;
	struct agent_vm *vm;
	char msg[512];
	int rc;

	/* validate */
	vm = check(ag, env->request_id, req);
	if (!vm)
		return;
	ci = calloc(1, sizeof(*ci));
	if (!ci) {
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	ci->ag = ag;
	ci->rid = env->request_id;
	snprintf(ci->vm_id, sizeof(ci->vm_id), "%s", vm->id);
	/* act: the callback answers */
	in.data = req->data;
	vr.op_case = CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT;
	vr.console_input = &in;
	rc = vmmctl_call_start(ag->loop, vm->dir, &vr, AGENT_STATUS_TIMEOUT_MS,
			       on_vmm, ci, &call);
	if (rc < 0) {
		snprintf(msg, sizeof(msg),
			 "VM %s: its VMM's control socket: %s; it is not "
			 "running",
			 vm->id, cn_strerror(rc));
		agent_reply(ag, env->request_id, CN_FAILED_PRECONDITION, msg);
		free(ci);
	}
}
