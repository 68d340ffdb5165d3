/* The VMM control socket: length-prefixed protobuf requests and replies. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/vmm/control_req.h"
#include "host/vmm/migrate.h"
#include "host/vmm/virtio_balloon.h"
#include "host/vmm/vmm.h"
#include "lib/err.h"
#include "lib/frame.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "proto/canopy_vmm.pb-c.h"

/* Clients at once. */
#define CONTROL_MAX_CLIENTS 16

struct control_client {
	struct control *ctl;
	int fd;
	struct frame_reader rd;
	struct frame_writer wr;
	int closing; /* close once the queued replies are out */
};

struct control {
	struct vm *vm;
	int lfd;
	char *path;
	struct control_client *clients[CONTROL_MAX_CLIENTS];
	/* The client waiting for the migrate_send reply, and its id. */
	struct control_client *mig_client;
	uint64_t mig_id;
};

typedef Canopy__V1__VmmReply Reply;
typedef Canopy__V1__VmmRequest Request;

static void client_close(struct control_client *cl)
{
	struct control *ctl = cl->ctl;

	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (ctl->clients[i] == cl)
			ctl->clients[i] = NULL;
	if (ctl->mig_client == cl)
		ctl->mig_client = NULL;
	loop_fd_del(ctl->vm->loop, cl->fd, LOOP_READ | LOOP_WRITE);
	sys_close(cl->fd);
	frame_reader_free(&cl->rd);
	frame_writer_free(&cl->wr);
	free(cl);
}

/* From the /proc/self/statm the VMM keeps open (the jail has no /proc). */
static uint64_t rss_bytes(struct vm *vm)
{
	char b[128] = "";
	unsigned long size = 0, res = 0;

	if (!vm->files_kept || vm->statm_fd < 0)
		return 0;
	if (pread(vm->statm_fd, b, sizeof(b) - 1, 0) > 0)
		sscanf(b, "%lu %lu", &size, &res);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static const Canopy__V1__VmRunState run_state[] = {
	[VM_CREATED] = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_CREATED,
	[VM_RUNNING] = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING,
	[VM_PAUSED] = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED,
	[VM_STOPPED] = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED,
};

/* Fill st (and the exit array it points into) from the VM. */
static void fill_status(struct vm *vm, Canopy__V1__VmmStatus *st,
			Canopy__V1__ExitCount *ex, Canopy__V1__ExitCount **exp)
{
	uint64_t counts[VMM_EXIT_KINDS];

	st->name = (char *)vm->cfg.name;
	st->state = run_state[vm->state];
	st->stop_reason = vm->state == VM_STOPPED ? vm->reason : (char *)"";
	st->uptime_ms = vm->start_ms ? sys_mono_ms() - vm->start_ms : 0;
	st->vcpus = vm->ncpus;
	st->memory_mib = vm->cfg.mem_mib;
	st->rss_bytes = rss_bytes(vm);
	st->pid = (uint32_t)getpid();
	vm_exit_counts(vm, counts);
	for (unsigned k = 0; k < VMM_EXIT_KINDS; k++) {
		canopy__v1__exit_count__init(&ex[k]);
		ex[k].reason = (char *)vmm_exit_kind_name(k);
		ex[k].count = counts[k];
		exp[k] = &ex[k];
	}
	st->n_exits = VMM_EXIT_KINDS;
	st->exits = exp;
}

/* Balloon fields of the status, when the VM has a balloon. */
static void fill_balloon(struct vm *vm, Canopy__V1__VmmStatus *st,
			 Canopy__V1__GuestMemory *gm)
{
	struct balloon_info bi;

	if (balloon_info(vm, &bi) < 0)
		return;
	st->balloon_mib = bi.actual_pages / 256;
	st->balloon_target_mib = bi.target_pages / 256;
	if (!bi.have_stats)
		return;
	gm->total_bytes = bi.total_bytes;
	gm->free_bytes = bi.free_bytes;
	gm->available_bytes = bi.available_bytes;
	gm->used_bytes = bi.total_bytes > bi.available_bytes ?
				 bi.total_bytes - bi.available_bytes :
				 0;
	gm->age_ms = bi.age_ms;
	st->guest_memory = gm;
}

static void set_error(Reply *r, Canopy__V1__Status *s, int neg_errno,
		      const char *msg)
{
	s->code = (int32_t)cn_code_from_errno(neg_errno);
	s->message = (char *)msg;
	r->status = s;
}

static void do_dirty(struct control_client *cl, const Request *rq, Reply *r,
		     Canopy__V1__Status *s, Canopy__V1__VmmDirtyBitmap *d,
		     char *msg, size_t msglen)
{
	struct vm *vm = cl->ctl->vm;
	int rc;

	switch (rq->dirty_log->op) {
	case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_START:
		rc = dirty_log_start(vm);
		break;
	case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_STOP:
		rc = dirty_log_stop(vm);
		break;
	case CANOPY__V1__DIRTY_LOG_OP__DIRTY_LOG_OP_FETCH:
		rc = dirty_log_fetch(vm, d);
		if (rc == 0) {
			r->result_case = CANOPY__V1__VMM_REPLY__RESULT_DIRTY;
			r->dirty = d;
		}
		break;
	default:
		snprintf(msg, msglen, "dirty_log: unknown op %d",
			 (int)rq->dirty_log->op);
		set_error(r, s, -EINVAL, msg);
		return;
	}
	if (rc < 0) {
		snprintf(msg, msglen, "dirty_log: %s%s", strerror(-rc),
			 rc == -EBUSY ? " (start dirty logging first)" : "");
		set_error(r, s, rc, msg);
	}
}

static void do_save(struct control_client *cl, const Request *rq, Reply *r,
		    Canopy__V1__Status *s, Canopy__V1__VmmSaveResult *sv,
		    char *msg, size_t msglen)
{
	struct vm *vm = cl->ctl->vm;
	uint64_t bytes = 0, us = 0;
	int rc, paused = 0;

	/* The path is there: vmm_control_req_decode checked it. Stopping
	 * after the save: pause first and never run again, so the guest
	 * does nothing (no frame sent, no write) the snapshot lacks. */
	if (rq->save->stop_after && vm->state == VM_RUNNING)
		paused = vmm_pause(vm) == 0;
	rc = snapshot_save(vm, rq->save->path, &bytes, &us, msg, msglen);
	if (rc < 0) {
		if (paused)
			(void)!vmm_resume(vm);
		set_error(r, s, rc, msg);
		return;
	}
	sv->path = rq->save->path;
	sv->bytes = bytes;
	sv->duration_us = us;
	r->result_case = CANOPY__V1__VMM_REPLY__RESULT_SAVED;
	r->saved = sv;
	if (rq->save->stop_after)
		vmm_finish(vm, VMM_EXIT_OK, "stopped after saving a snapshot");
}

/* Start an outgoing migration; the reply waits for its end. 1 when the
 * reply is deferred. */
static int do_migrate(struct control_client *cl, const Request *rq, Reply *r,
		      Canopy__V1__Status *s, char *msg, size_t msglen)
{
	int rc;

	if (cl->ctl->mig_client || migrate_busy(cl->ctl->vm)) {
		set_error(r, s, -EBUSY, "a migration is already running");
		return 0;
	}
	rc = migrate_send_start(cl->ctl->vm, rq->migrate_send, msg, msglen);
	if (rc < 0) {
		if (!msg[0])
			snprintf(msg, msglen, "migrate_send: %s",
				 strerror(-rc));
		set_error(r, s, rc, msg);
		return 0;
	}
	cl->ctl->mig_client = cl;
	cl->ctl->mig_id = rq->id;
	return 1;
}

/* migrate_resolve after an in-doubt migration; deferred like
 * migrate_send. 1 when the reply is deferred. */
static int do_resolve(struct control_client *cl, const Request *rq, Reply *r,
		      Canopy__V1__Status *s, char *msg, size_t msglen)
{
	int rc;

	if (cl->ctl->mig_client) {
		set_error(r, s, -EALREADY,
			  "migrate_resolve: another migration request is "
			  "being answered; retry when it is");
		return 0;
	}
	rc = migrate_resolve_start(cl->ctl->vm, rq->migrate_resolve->resume,
				   rq->migrate_resolve->power_off, msg, msglen);
	if (rc < 0) {
		set_error(r, s, rc, msg);
		return 0;
	}
	cl->ctl->mig_client = cl;
	cl->ctl->mig_id = rq->id;
	return 1;
}

void control_migrate_done(struct vm *vm, int rc, const char *msg,
			  const Canopy__V1__VmmMigrateResult *res)
{
	struct control *ctl = vm->ctl;
	struct control_client *cl = ctl ? ctl->mig_client : NULL;
	Reply r = CANOPY__V1__VMM_REPLY__INIT;
	Canopy__V1__Status s = CANOPY__V1__STATUS__INIT;

	if (!cl)
		return; /* the client went away; status still tells */
	ctl->mig_client = NULL;
	r.id = ctl->mig_id;
	if (rc < 0)
		set_error(&r, &s, rc, msg);
	if (res) {
		r.result_case = CANOPY__V1__VMM_REPLY__RESULT_MIGRATED;
		r.migrated = (Canopy__V1__VmmMigrateResult *)res;
		/* The outcome is unknown: neither a move nor a failure. */
		if (res->in_doubt)
			s.code = CN_UNKNOWN;
	}
	if (frame_queue_pb(&cl->wr, &r.base) == 0)
		(void)!frame_flush(&cl->wr, cl->fd);
}

/* console_input: queue the bytes (at most CONTROL_CONSOLE_INPUT_MAX,
 * checked by vmm_control_req_decode) for COM1. */
static void do_console_input(struct vm *vm, const Request *rq, Reply *r,
			     Canopy__V1__Status *s, char *msg, size_t msglen)
{
	const ProtobufCBinaryData *d = &rq->console_input->data;
	int rc;

	if (vm->state == VM_STOPPED) {
		set_error(r, s, -EBUSY,
			  "console_input: the VM has stopped; start it first");
		return;
	}
	rc = serial_input_queue(vm, d->data, d->len);
	if (rc == -ENOSPC)
		snprintf(msg, msglen,
			 "console_input: the guest has not read the 64 KiB "
			 "already queued; retry when it has");
	else if (rc < 0)
		snprintf(msg, msglen, "console_input: %s", strerror(-rc));
	if (rc < 0)
		set_error(r, s, rc, msg);
}

static int do_lifecycle(struct vm *vm, const Request *rq)
{
	switch (rq->op_case) {
	case CANOPY__V1__VMM_REQUEST__OP_PAUSE:
		return vmm_pause(vm);
	case CANOPY__V1__VMM_REQUEST__OP_RESUME:
		return vmm_resume(vm);
	default:
		return vmm_stop(vm, rq->stop->graceful, rq->stop->timeout_ms);
	}
}

/* Act on one decoded request and queue the reply. */
/* Pause, resume or stop; an error names the state it does not apply to. */
static void do_power(struct vm *vm, const Request *rq, Reply *r,
		     Canopy__V1__Status *s, char *msg, size_t msglen)
{
	int rc = do_lifecycle(vm, rq);

	if (rc < 0) {
		snprintf(msg, msglen,
			 "the VM is %s: the request does not apply",
			 vm_state_name(vm->state));
		set_error(r, s, rc, msg);
	}
}

static int handle(struct control_client *cl, const Request *rq)
{
	struct vm *vm = cl->ctl->vm;
	Reply r = CANOPY__V1__VMM_REPLY__INIT;
	Canopy__V1__Status s = CANOPY__V1__STATUS__INIT;
	Canopy__V1__VmmStatus st = CANOPY__V1__VMM_STATUS__INIT;
	Canopy__V1__GuestMemory gm = CANOPY__V1__GUEST_MEMORY__INIT;
	Canopy__V1__ExitCount ex[VMM_EXIT_KINDS], *exp[VMM_EXIT_KINDS];
	Canopy__V1__VmmDirtyBitmap d = CANOPY__V1__VMM_DIRTY_BITMAP__INIT;
	Canopy__V1__VmmSaveResult sv = CANOPY__V1__VMM_SAVE_RESULT__INIT;
	Canopy__V1__MigrationProgress mp = CANOPY__V1__MIGRATION_PROGRESS__INIT;
	char msg[256] = "";
	int rc;

	r.id = rq->id;
	switch (rq->op_case) {
	case CANOPY__V1__VMM_REQUEST__OP_STATUS:
		fill_status(vm, &st, ex, exp);
		fill_balloon(vm, &st, &gm);
		if (migrate_progress(vm, &mp))
			st.migration = &mp;
		r.result_case = CANOPY__V1__VMM_REPLY__RESULT_VM_STATUS;
		r.vm_status = &st;
		break;
	case CANOPY__V1__VMM_REQUEST__OP_PAUSE:
	case CANOPY__V1__VMM_REQUEST__OP_RESUME:
	case CANOPY__V1__VMM_REQUEST__OP_STOP:
		do_power(vm, rq, &r, &s, msg, sizeof(msg));
		break;
	case CANOPY__V1__VMM_REQUEST__OP_SAVE:
		do_save(cl, rq, &r, &s, &sv, msg, sizeof(msg));
		break;
	case CANOPY__V1__VMM_REQUEST__OP_DIRTY_LOG:
		do_dirty(cl, rq, &r, &s, &d, msg, sizeof(msg));
		break;
	case CANOPY__V1__VMM_REQUEST__OP_MIGRATE_SEND:
		if (do_migrate(cl, rq, &r, &s, msg, sizeof(msg)))
			return 0;
		break;
	case CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE:
		if (do_resolve(cl, rq, &r, &s, msg, sizeof(msg)))
			return 0;
		break;
	case CANOPY__V1__VMM_REQUEST__OP_BALLOON:
		rc = balloon_set_target(vm, rq->balloon->target_mib, msg,
					sizeof(msg));
		if (rc < 0)
			set_error(&r, &s, rc, msg);
		break;
	case CANOPY__V1__VMM_REQUEST__OP_CONSOLE_INPUT:
		do_console_input(vm, rq, &r, &s, msg, sizeof(msg));
		break;
	default:
		set_error(&r, &s, -EINVAL, "request without a known operation");
	}
	rc = frame_queue_pb(&cl->wr, &r.base);
	free(d.bitmap.data);
	return rc;
}

/* While a migration runs, only status and balloon are served. */
static int migrating(struct control_client *cl, const Request *rq)
{
	Reply r = CANOPY__V1__VMM_REPLY__INIT;
	Canopy__V1__Status s = CANOPY__V1__STATUS__INIT;

	if (!migrate_busy(cl->ctl->vm) ||
	    rq->op_case == CANOPY__V1__VMM_REQUEST__OP_STATUS ||
	    rq->op_case == CANOPY__V1__VMM_REQUEST__OP_BALLOON ||
	    rq->op_case == CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE)
		return 0;
	r.id = rq->id;
	if (migrate_in_doubt(cl->ctl->vm))
		set_error(&r, &s, -EBUSY,
			  "migration in doubt; waiting for migrate_resolve "
			  "(COMMIT was sent, the destination did not confirm "
			  "it runs the VM)");
	else
		set_error(&r, &s, -EBUSY,
			  "a migration is running; wait for it to end");
	return frame_queue_pb(&cl->wr, &r.base) ?: 1;
}

static int reply_error(struct control_client *cl, uint64_t id, int neg_errno,
		       const char *msg)
{
	Reply r = CANOPY__V1__VMM_REPLY__INIT;
	Canopy__V1__Status s = CANOPY__V1__STATUS__INIT;

	r.id = id;
	set_error(&r, &s, neg_errno, msg);
	return frame_queue_pb(&cl->wr, &r.base);
}

/* Decode, validate and act on every whole frame buffered. */
static int client_process(struct control_client *cl)
{
	const uint8_t *body;
	char msg[128];
	uint32_t len;
	Request *rq;
	int rc;

	while ((rc = frame_next(&cl->rd, &body, &len)) == 1) {
		if (vmm_control_req_decode(body, len, &rq, msg, sizeof(msg))) {
			if (!rq)
				log_warn("vmm", "malformed control request",
					 "len=%u", len);
			rc = reply_error(cl, rq ? rq->id : 0, -EINVAL, msg);
			if (rq)
				canopy__v1__vmm_request__free_unpacked(rq,
								       NULL);
		} else {
			rc = migrating(cl, rq);
			if (rc == 0)
				rc = handle(cl, rq);
			else if (rc == 1)
				rc = 0;
			canopy__v1__vmm_request__free_unpacked(rq, NULL);
		}
		if (rc < 0)
			return rc;
	}
	if (rc == -EMSGSIZE) {
		log_warn("vmm", "oversized control request", "max=%u",
			 CONTROL_MAX_REQUEST);
		cl->closing = 1;
		return reply_error(cl, 0, -EMSGSIZE,
				   "request too large; the limit is 64 KiB");
	}
	return rc;
}

static void on_client(struct loop *l, int fd, unsigned mask, void *arg);

static void client_flush(struct control_client *cl)
{
	ssize_t left = frame_flush(&cl->wr, cl->fd);

	if (left < 0 || (left == 0 && cl->closing)) {
		client_close(cl);
		return;
	}
	if (left > 0)
		(void)!loop_fd_add(cl->ctl->vm->loop, cl->fd, LOOP_WRITE,
				   on_client, cl);
	else
		loop_fd_del(cl->ctl->vm->loop, cl->fd, LOOP_WRITE);
}

static void on_client(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct control_client *cl = arg;
	ssize_t n = 1;

	if ((mask & LOOP_READ) && !cl->closing) {
		while ((n = frame_reader_fill(&cl->rd, fd)) > 0)
			if (client_process(cl) < 0 || cl->closing)
				break;
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			client_close(cl);
			return;
		}
	}
	client_flush(cl);
}

static void on_accept(struct loop *l, int lfd, unsigned mask, void *arg)
{
	struct control *ctl = arg;
	int fd;

	while ((fd = sys_accept(lfd, 1)) >= 0) {
		struct control_client *cl = NULL;
		unsigned i;

		for (i = 0; i < CONTROL_MAX_CLIENTS; i++)
			if (!ctl->clients[i])
				break;
		if (i < CONTROL_MAX_CLIENTS)
			cl = calloc(1, sizeof(*cl));
		if (!cl) {
			log_warn("vmm", "control client refused",
				 "why=too many clients");
			sys_close(fd);
			continue;
		}
		cl->ctl = ctl;
		cl->fd = fd;
		frame_reader_init(&cl->rd, CONTROL_MAX_REQUEST);
		frame_writer_init(&cl->wr);
		ctl->clients[i] = cl;
		if (loop_fd_add(l, fd, LOOP_READ, on_client, cl) < 0)
			client_close(cl);
	}
}

int control_start(struct vm *vm, const char *path, char *err, size_t errlen)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int rc;

	if (!ctl)
		return -ENOMEM;
	ctl->vm = vm;
	ctl->path = strdup(path);
	/* Bound already, as root, when the jail was entered (jail.h). */
	if (vm->files_kept && vm->ctl_lfd >= 0) {
		ctl->lfd = vm->ctl_lfd;
		vm->ctl_lfd = -1;
	} else {
		ctl->lfd = sys_unix_listen(path, 16);
	}
	if (ctl->lfd < 0 || !ctl->path) {
		rc = ctl->lfd < 0 ? ctl->lfd : -ENOMEM;
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(-rc));
		free(ctl->path);
		free(ctl);
		return rc;
	}
	vm->ctl = ctl;
	rc = sys_set_nonblock(ctl->lfd, 1);
	if (rc == 0)
		rc = loop_fd_add(vm->loop, ctl->lfd, LOOP_READ, on_accept, ctl);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(-rc));
		control_stop(vm);
	}
	return rc;
}

void control_stop(struct vm *vm)
{
	struct control *ctl = vm->ctl;

	if (!ctl)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (ctl->clients[i]) {
			(void)!frame_flush(&ctl->clients[i]->wr,
					   ctl->clients[i]->fd);
			client_close(ctl->clients[i]);
		}
	loop_fd_del(vm->loop, ctl->lfd, LOOP_READ);
	sys_close(ctl->lfd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
	vm->ctl = NULL;
}
