/* canopy-agent: START, STOP, STOP_HARD, PAUSE and RESUME of a VM, driven
 * by timers and control-socket calls so that no wait blocks the loop; and
 * adoption of a VMM found running at start-up. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

#define RUN(x) CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_##x
#define ACT(x) CANOPY__V1__VM_ACTION__VM_ACTION_##x

static int is_up(Canopy__V1__VmRunState s)
{
	return s == RUN(RUNNING) || s == RUN(PAUSED);
}

/* Arm vm's op timer (replacing any). 0 or -errno. */
static int op_timer(struct agent *ag, struct agent_vm *vm, uint64_t ms,
		    loop_timer_fn fn)
{
	int err = 0;

	if (vm->op_timer)
		(void)loop_timer_del(ag->loop, vm->op_timer);
	vm->op_timer = loop_timer_add(ag->loop, ms, fn, vm, &err);
	return vm->op_timer ? 0 : (err ? err : -ENOMEM);
}

/*
 * An op's timeout_ms is the time within which the manager expects the
 * answer (it is also its bus request timeout), so every wait is fitted
 * inside it with a margin for the answer to travel.
 */
static uint32_t budget(struct agent_vm *vm, uint32_t dflt)
{
	if (!vm->op->timeout_ms)
		vm->op->timeout_ms = dflt;
	return vm->op->timeout_ms;
}

static uint32_t margin(uint32_t b)
{
	return CN_MIN(AGENT_ANSWER_MARGIN_MS, b / 10);
}

/* Start a control call for vm's op. */
static int op_call(struct agent *ag, struct agent_vm *vm,
		   Canopy__V1__VmmRequest *req, uint32_t timeout_ms,
		   vmmctl_done_fn cb)
{
	return vmmctl_call_start(ag->loop, vm->dir, req, timeout_ms, cb, vm,
				 &vm->op_call);
}

/* ---- START ------------------------------------------------------------- */

static void start_fail_timeout(struct agent *ag, struct agent_vm *vm)
{
	char tail[600], msg[900];

	agent_log_tail(vm->dir, vm->log_mark, tail, sizeof(tail));
	snprintf(msg, sizeof(msg),
		 "canopy-vmm did not report the VM running within %u ms and "
		 "was killed; its log ends: %s",
		 vm->op->timeout_ms, tail[0] ? tail : "(empty)");
	agent_vmm_kill(vm);
	agent_op_finish(ag, vm, CN_DEADLINE_EXCEEDED, msg);
}

static void start_status(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;

	vm->op_call = NULL;
	if (status < 0 || vmmctl_code(rep) != 0 || !rep->vm_status ||
	    !is_up(rep->vm_status->state))
		return; /* not yet: the poll timer asks again */
	agent_vm_status_apply(vm, rep->vm_status);
	agent_op_finish(vm->ag, vm, CN_OK, "");
	agent_vm_report(vm->ag, vm);
}

static int start_poll(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;

	if (loop_now_ms(l) >= vm->op->deadline_ms) {
		vm->op_timer = 0;
		start_fail_timeout(vm->ag, vm);
		return LOOP_TIMER_STOP;
	}
	if (!vm->op_call) {
		req.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
		req.status = &st;
		/* -ENOENT / -ECONNREFUSED: not listening yet; poll again. */
		(void)op_call(vm->ag, vm, &req, AGENT_STATUS_TIMEOUT_MS,
			      start_status);
	}
	vm->op->poll_ms = CN_MIN(vm->op->poll_ms * 2, AGENT_START_POLL_MS);
	return (int)vm->op->poll_ms;
}

void agent_power_start(struct agent *ag, struct agent_vm *vm)
{
	char msg[600];
	uint32_t b;
	int rc;

	if (agent_vm_active(vm)) {
		agent_op_finish(ag, vm, CN_OK, "the VM is already running");
		return;
	}
	b = budget(vm, AGENT_START_TIMEOUT_MS_DEFAULT);
	vm->op->deadline_ms = loop_now_ms(ag->loop) + b - margin(b);
	rc = agent_vm_ds_assign(ag, vm, msg, sizeof(msg));
	if (rc < 0) {
		agent_op_finish(ag, vm,
				rc == -EBADFD ? CN_FAILED_PRECONDITION :
						cn_code_from_errno(rc),
				msg);
		return;
	}
	rc = agent_vmm_spawn(ag, vm, msg, sizeof(msg));
	if (rc < 0) {
		agent_vm_ds_release(ag, vm);
		agent_op_finish(ag, vm, cn_code_from_errno(rc), msg);
		return;
	}
	vm->state = RUN(CREATED);
	vm->reason[0] = '\0';
	vm->op->poll_ms = AGENT_START_POLL_FIRST_MS;
	rc = op_timer(ag, vm, vm->op->poll_ms, start_poll);
	if (rc < 0) {
		agent_vmm_kill(vm);
		agent_op_finish(ag, vm, CN_INTERNAL, "cannot arm a timer");
	}
}

/* ---- STOP / STOP_HARD -------------------------------------------------- */

static int stop_deadline(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;

	if (!vm->op->killed) {
		log_warn("agent", "vmm did not stop in time; killing it",
			 "vm=%s pid=%d", vm->id, (int)vm->pid);
		agent_vmm_kill(vm);
		vm->op->killed = 1;
		return (int)CN_MAX(margin(vm->op->timeout_ms), 100);
	}
	vm->op_timer = 0;
	agent_op_finish(vm->ag, vm, CN_INTERNAL,
			"canopy-vmm did not exit even after SIGKILL; check the "
			"host (D state?)");
	return LOOP_TIMER_STOP;
}

static void stop_reply(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;

	vm->op_call = NULL;
	if (status == 0 && vmmctl_code(rep) == 0)
		return; /* the pidfd tells when it is gone */
	log_warn("agent", "stop request failed; killing the vmm",
		 "vm=%s err=\"%s\"", vm->id,
		 status < 0 ? cn_strerror(status) : vmmctl_message(rep));
	agent_vmm_kill(vm);
	vm->op->killed = 1;
}

void agent_power_stop(struct agent *ag, struct agent_vm *vm, int hard)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStopRequest stop = CANOPY__V1__VMM_STOP_REQUEST__INIT;
	uint32_t b = budget(vm, hard ? AGENT_STOP_HARD_TIMEOUT_MS_DEFAULT :
				       AGENT_STOP_TIMEOUT_MS_DEFAULT);
	/* Graceful: the VMM stops hard itself at 3/4 of the budget; we
	 * SIGKILL at 7/8. Hard: SIGKILL at half if the VMM has not gone. */
	uint32_t grace = hard ? 0 : b / 4 * 3;
	uint32_t kill_at = hard ? b / 2 : b / 8 * 7;

	if (!agent_vm_active(vm)) {
		agent_op_finish(ag, vm, CN_OK, "the VM is already stopped");
		return;
	}
	stop.graceful = !hard;
	stop.timeout_ms = CN_MAX(grace, 1);
	req.op_case = CANOPY__V1__VMM_REQUEST__OP_STOP;
	req.stop = &stop;
	if (op_call(ag, vm, &req, CN_MAX(kill_at, 1), stop_reply) < 0) {
		agent_vmm_kill(vm);
		vm->op->killed = 1;
	}
	if (op_timer(ag, vm, kill_at, stop_deadline) < 0) {
		agent_vmm_kill(vm);
		vm->op->killed = 1;
	}
}

/* ---- PAUSE / RESUME ---------------------------------------------------- */

static void pause_reply(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	int pause = vm->op->action == ACT(PAUSE);
	char msg[300];

	vm->op_call = NULL;
	if (status < 0) {
		snprintf(msg, sizeof(msg), "canopy-vmm did not answer: %s",
			 cn_strerror(status));
		agent_op_finish(vm->ag, vm, cn_code_from_errno(status), msg);
		return;
	}
	if (vmmctl_code(rep) != 0) {
		agent_op_finish(vm->ag, vm, vmmctl_code(rep),
				vmmctl_message(rep));
		return;
	}
	vm->state = pause ? RUN(PAUSED) : RUN(RUNNING);
	agent_op_finish(vm->ag, vm, CN_OK, "");
	agent_vm_report(vm->ag, vm);
}

void agent_power_pause(struct agent *ag, struct agent_vm *vm, int pause)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmPauseRequest p = CANOPY__V1__VMM_PAUSE_REQUEST__INIT;
	Canopy__V1__VmmResumeRequest r = CANOPY__V1__VMM_RESUME_REQUEST__INIT;
	char msg[200];
	uint32_t b;
	int rc;

	if (!agent_vm_active(vm)) {
		snprintf(msg, sizeof(msg),
			 "VM %s is not running; start it "
			 "first",
			 vm->id);
		agent_op_finish(ag, vm, CN_FAILED_PRECONDITION, msg);
		return;
	}
	if (vm->state == (pause ? RUN(PAUSED) : RUN(RUNNING))) {
		agent_op_finish(ag, vm, CN_OK,
				pause ? "the VM is already paused" :
					"the VM is already running");
		return;
	}
	if (pause) {
		req.op_case = CANOPY__V1__VMM_REQUEST__OP_PAUSE;
		req.pause = &p;
	} else {
		req.op_case = CANOPY__V1__VMM_REQUEST__OP_RESUME;
		req.resume = &r;
	}
	b = budget(vm, AGENT_STATUS_TIMEOUT_MS);
	rc = op_call(ag, vm, &req, CN_MAX(b - margin(b), 1), pause_reply);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "cannot reach canopy-vmm of %s: %s",
			 vm->id, cn_strerror(rc));
		agent_op_finish(ag, vm, cn_code_from_errno(rc), msg);
	}
}

/* ---- the VMM exited ---------------------------------------------------- */

void agent_power_exited(struct agent *ag, struct agent_vm *vm)
{
	char tail[600], msg[1200];

	if (!vm->op) {
		/* An adoption call may still be out: it has nothing to do. */
		vmmctl_call_cancel(vm->op_call);
		vm->op_call = NULL;
		return;
	}
	switch (vm->op->action) {
	case ACT(STOP):
	case ACT(STOP_HARD):
		agent_op_finish(ag, vm, CN_OK, "");
		break;
	case ACT(START):
		if (vm->exit_status == 0) {
			/* Status 0: the guest ran and powered off (or was
			 * stopped) before we saw it running. */
			snprintf(msg, sizeof(msg),
				 "the VM started and has already stopped: %s",
				 vm->reason);
			agent_op_finish(ag, vm, CN_OK, msg);
			break;
		}
		agent_log_tail(vm->dir, vm->log_mark, tail, sizeof(tail));
		snprintf(msg, sizeof(msg),
			 "canopy-vmm exited before the VM ran: %s; its log "
			 "ends: %s",
			 vm->reason, tail[0] ? tail : "(empty)");
		agent_op_finish(ag, vm, CN_FAILED_PRECONDITION, msg);
		break;
	default:
		snprintf(msg, sizeof(msg), "canopy-vmm exited: %s", vm->reason);
		agent_op_finish(ag, vm, CN_ABORTED, msg);
		break;
	}
}

/* ---- adoption at start-up ---------------------------------------------- */

static void adopt_reply(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	int rc = status;

	vm->op_call = NULL;
	if (!rc &&
	    (vmmctl_code(rep) || !rep->vm_status || !rep->vm_status->pid))
		rc = -EBADMSG;
	if (!rc)
		rc = agent_vmm_watch(vm->ag, vm, (pid_t)rep->vm_status->pid, 0);
	if (rc < 0) {
		log_info("agent", "vmm not adopted", "vm=%s err=\"%s\"", vm->id,
			 cn_strerror(rc));
		agent_vm_report(vm->ag, vm);
		return;
	}
	agent_vm_status_apply(vm, rep->vm_status);
	agent_vm_ds_restore(vm->ag, vm);
	agent_vmm_log_mark(vm);
	if (!is_up(rep->vm_status->state))
		vm->state = RUN(CREATED); /* stopping: the pidfd will tell */
	agent_migrate_adopt_doubt(vm->ag, vm, rep->vm_status);
	log_info("agent", "vmm adopted", "vm=%s pid=%d", vm->id, (int)vm->pid);
	agent_vm_report(vm->ag, vm);
}

void agent_power_adopt(struct agent *ag, struct agent_vm *vm)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;
	int rc;

	req.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
	req.status = &st;
	rc = op_call(ag, vm, &req, AGENT_STATUS_TIMEOUT_MS, adopt_reply);
	if (rc < 0)
		log_info("agent", "vmm not adopted", "vm=%s err=\"%s\"", vm->id,
			 cn_strerror(rc));
}
