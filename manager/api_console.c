/* canopy-managerd: VmService.ReadConsole and WriteConsole, via the agent. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/log.h"
#include "manager/manager.h"

/* A ReadConsole or WriteConsole waiting for its agent's answer. */
struct console_req {
	struct manager *m;
	struct api_call *c; /* NULL once the client went away */
	char host[MGR_KEY_MAX];
	char vm[MGR_KEY_MAX];
	bool write; /* WriteConsole */
};

static void on_cancel(void *arg, struct api_call *c)
{
	struct console_req *r = arg;

	r->c = NULL; /* the bus callback frees r */
	api_fail(c, CN_CANCELLED, "the client cancelled the call");
}

static void reply_data(struct api_call *c, const Canopy__V1__ConsoleData *d)
{
	Canopy__V1__ReadConsoleResponse resp =
		CANOPY__V1__READ_CONSOLE_RESPONSE__INIT;

	resp.data = d->data;
	resp.next_offset = d->next_offset;
	resp.size = d->size;
	api_reply(c, &resp.base);
}

/* Map the agent's answer (or the bus failure status) onto the call. */
static void answer(struct console_req *r, int status,
		   const Canopy__V1__Envelope *env)
{
	Canopy__V1__WriteConsoleResponse wr =
		CANOPY__V1__WRITE_CONSOLE_RESPONSE__INIT;
	const char *what = r->write ? "console input" : "console read";

	if (status == -ETIMEDOUT) {
		api_fail(r->c, CN_DEADLINE_EXCEEDED,
			 "host %s did not answer the %s of vm %s within %u ms; "
			 "check the host's canopy-agent",
			 r->host, what, r->vm, MGR_CONSOLE_TIMEOUT_MS);
	} else if (status) {
		api_fail(r->c, CN_UNAVAILABLE,
			 "the %s of vm %s on host %s was dropped (%s); retry",
			 what, r->vm, r->host, cn_strerror(status));
	} else if (!r->write &&
		   env->body_case == CANOPY__V1__ENVELOPE__BODY_CONSOLE_DATA) {
		reply_data(r->c, env->console_data);
	} else if (r->write &&
		   env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
		   (!env->result->status || !env->result->status->code)) {
		api_reply(r->c, &wr.base);
	} else if (!mgr_fail_agent(r->c, r->host, env)) {
		api_fail(r->c, CN_INTERNAL,
			 "host %s sent no answer to the %s of vm %s; check "
			 "the version of its canopy-agent",
			 r->host, what, r->vm);
	}
}

static void on_reply(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct console_req *r = arg;

	if (r->c)
		answer(r, status, env);
	free(r);
}

/* Send the ConsoleRead for req to r->host. 0 or -errno. */
static int forward(struct manager *m, struct console_req *r,
		   const Canopy__V1__ReadConsoleRequest *req)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ConsoleRead cr = CANOPY__V1__CONSOLE_READ__INIT;

	if (!m->bus)
		return -ENOTCONN;
	cr.vm_id = r->vm;
	cr.offset = req->offset;
	cr.max = req->max_bytes && req->max_bytes < MGR_CONSOLE_READ_MAX ?
			 req->max_bytes :
			 MGR_CONSOLE_READ_MAX;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_CONSOLE_READ;
	env.console_read = &cr;
	return bus_server_request(m->bus, r->host, &env, MGR_CONSOLE_TIMEOUT_MS,
				  on_reply, r, NULL);
}

/* The request state for vm on its connected host; else answers c and
 * returns NULL. */
static struct console_req *req_new(struct manager *m, struct api_call *c,
				   const Canopy__V1__Vm *vm)
{
	struct console_req *r;
	struct mgr_host *h;

	if (!vm->host[0]) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "vm %s is off; start it first", vm->id);
		return NULL;
	}
	h = mgr_host_find(m, vm->host);
	if (!h || !h->up ||
	    h->rec->state != CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED) {
		api_fail(c, CN_UNAVAILABLE,
			 "vm %s is on host %s, which is disconnected; wait for "
			 "the host to reconnect",
			 vm->id, vm->host);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory; retry");
		return NULL;
	}
	r->m = m;
	r->c = c;
	snprintf(r->host, sizeof(r->host), "%s", vm->host);
	snprintf(r->vm, sizeof(r->vm), "%s", vm->id);
	return r;
}

/* After forward(): watch for cancellation, or fail the call. */
static void sent(struct api_call *c, struct console_req *r, int rc)
{
	if (rc) {
		api_fail(c, CN_UNAVAILABLE,
			 "cannot reach host %s for the console of vm %s: %s; "
			 "retry when the host is connected",
			 r->host, r->vm, cn_strerror(rc));
		free(r);
		return;
	}
	api_call_on_cancel(c, on_cancel, r);
}

void api_read_console(void *arg, struct api_call *c, const ProtobufCMessage *rq)
{
	const Canopy__V1__ReadConsoleRequest *req = (const void *)rq;
	struct manager *m = arg;
	struct console_req *r;
	Canopy__V1__Vm *vm;

	if (mgr_vm_read(m, c, req->name, &vm))
		return;
	r = req_new(m, c, vm);
	if (r)
		sent(c, r, forward(m, r, req));
	canopy__v1__vm__free_unpacked(vm, NULL);
}

/* Send the ConsoleInput for req to r->host. 0 or -errno. */
static int forward_input(struct manager *m, struct console_req *r,
			 const Canopy__V1__WriteConsoleRequest *req)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ConsoleInput ci = CANOPY__V1__CONSOLE_INPUT__INIT;

	if (!m->bus)
		return -ENOTCONN;
	ci.vm_id = r->vm;
	ci.data = req->data;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_CONSOLE_INPUT;
	env.console_input = &ci;
	return bus_server_request(m->bus, r->host, &env, MGR_CONSOLE_TIMEOUT_MS,
				  on_reply, r, NULL);
}

/* Whether a VM in state s has a VMM that takes input. */
static bool takes_input(Canopy__V1__VmRunState s)
{
	return s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING ||
	       s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED ||
	       s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
}

void api_write_console(void *arg, struct api_call *c,
		       const ProtobufCMessage *rq)
{
	const Canopy__V1__WriteConsoleRequest *req = (const void *)rq;
	struct manager *m = arg;
	struct console_req *r;
	Canopy__V1__Vm *vm;

	/* validate */
	if (!req->data.len || req->data.len > MGR_CONSOLE_WRITE_MAX) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "console input of %zu bytes; send 1 to %u bytes per "
			 "WriteConsole",
			 req->data.len, MGR_CONSOLE_WRITE_MAX);
		return;
	}
	if (mgr_vm_read(m, c, req->name, &vm))
		return;
	if (!takes_input(vm->state)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "vm %s is not running; start it first", vm->id);
		goto out;
	}
	/* act */
	r = req_new(m, c, vm);
	if (r) {
		r->write = true;
		sent(c, r, forward_input(m, r, req));
	}
out:
	canopy__v1__vm__free_unpacked(vm, NULL);
}
