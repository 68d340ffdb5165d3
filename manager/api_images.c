/* canopy-managerd: ImageService.ImportImage: admission, the download on
 * an agent that has the datastore as a task, its progress, result and
 * cancellation (docs/images.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "lib/url.h"
#include "manager/api_check.h"
#include "manager/task_state.h"
#include "manager/tasks.h"

#define TS(x) CANOPY__V1__TASK_STATE__TASK_STATE_##x

/* One import the leader runs. */
struct mgr_image {
	struct mgr_image *next;
	struct manager *m;
	struct api_call *c; /* the ImportImage call until answered */
	Canopy__V1__Task *rec; /* heap; set once the agent accepted */
	char id[MGR_TASK_ID_LEN + 1];
	char host[MGR_KEY_MAX];
	char ds[MGR_KEY_MAX];
	char name[MGR_IMAGE_NAME_MAX + 1];
	char safe_url[CN_URL_MAX + 1]; /* credentials redacted */
	bool in_flight; /* a bus request holds this as its argument */
	bool gone; /* dropped while in flight: the reply callback frees */
	bool cancelling;
	uint64_t heard_ms; /* monotonic: the host's last word on it */
};

int mgr_image_size_parse(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || v == 0)
		return -EINVAL;
	if (*end) {
		const char *u = strchr("KMGT", *end);

		if (!u || end[1])
			return -EINVAL;
		shift = 10u * (unsigned)(u - "KMGT" + 1);
	}
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int host_has(const struct mgr_host *h, const char *ds)
{
	for (size_t i = 0; i < h->rec->n_datastores; i++)
		if (strcmp(h->rec->datastores[i], ds) == 0)
			return 1;
	return 0;
}

struct mgr_host *mgr_ds_host_pick(struct manager *m, struct api_call *c,
				  const char *ds)
{
	struct mgr_host *h, *known = NULL;

	for (h = m->hosts; h; h = h->next) {
		if (!host_has(h, ds))
			continue;
		if (h->up &&
		    h->rec->state ==
			    CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED)
			return h;
		known = h;
	}
	if (!known)
		api_fail(c, CN_NOT_FOUND,
			 "datastore %s is unknown: no host reports it; list "
			 "datastores with 'canopy datastore list'",
			 ds);
	else
		api_fail(
			c, CN_FAILED_PRECONDITION,
			"no connected host has datastore %s (host %s is %s); "
			"start the canopy-agent of a host that has it",
			ds, known->rec->id,
			known->rec->state ==
					CANOPY__V1__HOST_STATE__HOST_STATE_MAINTENANCE ?
				"in maintenance" :
				"disconnected");
	return NULL;
}

static struct mgr_image *find(struct manager *m, const char *id)
{
	struct mgr_image *im;

	for (im = m->images; im; im = im->next)
		if (strcmp(im->id, id) == 0)
			return im;
	return NULL;
}

/* Unlink im and free it, or leave that to its pending bus callback. */
static void drop(struct mgr_image *im)
{
	struct mgr_image **pp;

	for (pp = &im->m->images; *pp; pp = &(*pp)->next)
		if (*pp == im) {
			*pp = im->next;
			break;
		}
	if (im->rec)
		canopy__v1__task__free_unpacked(im->rec, NULL);
	im->rec = NULL;
	if (im->in_flight)
		im->gone = true;
	else
		free(im);
}

/* End the task of im (code CN_OK: SUCCEEDED) and drop im. */
static void end(struct mgr_image *im, enum cn_code code, const char *msg)
{
	struct manager *m = im->m;
	Canopy__V1__Task *rec = im->rec;

	rec->state = code == CN_OK	  ? TS(SUCCEEDED) :
		     code == CN_CANCELLED ? TS(CANCELLED) :
					    TS(FAILED);
	rec->end_unix_ms = mgr_unix_ms();
	if (code == CN_OK) {
		rec->progress = 100;
		mgr_set_str(&rec->result, msg);
	} else {
		mgr_task_set_error(rec, code, msg);
	}
	mgr_set_str(&rec->phase, mgr_task_state_name(rec->state));
	mgr_task_update(m, rec);
	mgr_event(m,
		  code == CN_OK ?
			  CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO :
			  CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_ERROR,
		  code == CN_OK	       ? "image.imported" :
		  code == CN_CANCELLED ? "task.cancelled" :
					 "task.failed",
		  rec->object, rec->id, "%s of %s %s: %s", rec->kind,
		  rec->object,
		  code == CN_OK	       ? "succeeded" :
		  code == CN_CANCELLED ? "cancelled" :
					 "failed",
		  msg);
	log_info("manager", "image import ended",
		 "task=%s url=\"%s\" code=%s msg=\"%s\"", im->id, im->safe_url,
		 cn_code_name(code), msg);
	drop(im);
}

/* The task record of an accepted import (RUNNING). */
static Canopy__V1__Task *task_new(struct mgr_image *im)
{
	Canopy__V1__Task *rec = calloc(1, sizeof(*rec));
	char object[MGR_KEY_MAX + MGR_IMAGE_NAME_MAX + 16],
		phase[MGR_KEY_MAX + 32];

	if (!rec)
		return NULL;
	canopy__v1__task__init(rec);
	snprintf(object, sizeof(object), "datastore/%s/%s", im->ds, im->name);
	snprintf(phase, sizeof(phase), "downloading on host %s", im->host);
	if (mgr_set_str(&rec->id, im->id) ||
	    mgr_set_str(&rec->kind, "image.import") ||
	    mgr_set_str(&rec->object, object) ||
	    mgr_set_str(&rec->phase, phase) ||
	    mgr_set_str(&rec->manager, im->m->opt.id)) {
		canopy__v1__task__free_unpacked(rec, NULL);
		return NULL;
	}
	rec->state = TS(RUNNING);
	rec->start_unix_ms = mgr_unix_ms();
	return rec;
}

static void on_cancel_reply(void *arg, int status,
			    const Canopy__V1__Envelope *env)
{
	struct mgr_image *im = arg;

	(void)env;
	im->in_flight = false;
	if (im->gone) {
		free(im);
		return;
	}
	if (status)
		log_warn("manager", "image cancel not delivered",
			 "task=%s host=%s err=\"%s\"", im->id, im->host,
			 cn_strerror(status));
}

static int send_cancel(struct mgr_image *im)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ImageCancel ic = CANOPY__V1__IMAGE_CANCEL__INIT;
	int rc;

	if (!im->m->bus || im->in_flight)
		return -EBUSY;
	ic.task_id = im->id;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_IMAGE_CANCEL;
	env.image_cancel = &ic;
	rc = bus_server_request(im->m->bus, im->host, &env,
				im->m->opt.command_timeout_ms, on_cancel_reply,
				im, NULL);
	if (rc == 0)
		im->in_flight = true;
	return rc;
}

/* Fail imports whose host went silent; runs while there are imports. */
static int watch_tick(struct loop *l, uint64_t id, void *arg)
{
	struct manager *m = arg;
	struct mgr_image *im, *next;
	uint64_t now = sys_mono_ms();
	char msg[MGR_KEY_MAX * 2 + MGR_IMAGE_NAME_MAX * 2 + 200];

	(void)l;
	(void)id;
	for (im = m->images; im; im = next) {
		next = im->next;
		if (!im->rec || now - im->heard_ms < MGR_IMAGE_SILENCE_MS)
			continue;
		snprintf(msg, sizeof(msg),
			 "host %s sent no progress of the import for %u s (its "
			 "canopy-agent restarted?); check datastore %s for %s "
			 "or %s.part and import again",
			 im->host, MGR_IMAGE_SILENCE_MS / 1000, im->ds,
			 im->name, im->name);
		end(im, CN_UNAVAILABLE, msg);
	}
	if (m->images)
		return MGR_IMAGE_SILENCE_MS / 4;
	m->image_timer = 0;
	return LOOP_TIMER_STOP;
}

static void watch_start(struct manager *m)
{
	int err = 0;

	if (m->image_timer)
		return;
	m->image_timer = loop_timer_add(m->l, MGR_IMAGE_SILENCE_MS / 4,
					watch_tick, m, &err);
	if (!m->image_timer)
		log_warn("manager", "no watch timer for image imports",
			 "err=\"%s\"", cn_strerror(err));
}

/* The agent accepted: store the task and answer the call with it. */
static void accepted(struct mgr_image *im)
{
	struct api_call *c = im->c;
	int rc;

	im->rec = task_new(im);
	rc = im->rec ? mgr_task_save(im->m, im->rec, NULL, NULL) : -ENOMEM;
	if (rc) {
		if (send_cancel(im))
			log_warn("manager",
				 "cannot cancel an unrecorded import",
				 "task=%s host=%s", im->id, im->host);
		if (c)
			mgr_fail_store(im->m, c, rc,
				       "recording the import task");
		im->c = NULL;
		drop(im);
		return;
	}
	im->heard_ms = sys_mono_ms();
	watch_start(im->m);
	log_info("manager", "image import started",
		 "task=%s host=%s datastore=%s name=%s url=\"%s\"", im->id,
		 im->host, im->ds, im->name, im->safe_url);
	im->c = NULL;
	if (c)
		api_reply(c, &im->rec->base);
}

static void on_import_reply(void *arg, int status,
			    const Canopy__V1__Envelope *env)
{
	struct mgr_image *im = arg;
	const Canopy__V1__Status *st = NULL;
	struct api_call *c = im->c;

	im->in_flight = false;
	if (im->gone) {
		free(im);
		return;
	}
	if (!status && env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT)
		st = env->result->status;
	if (!status && (!st || st->code == CN_OK)) {
		accepted(im);
		return;
	}
	im->c = NULL;
	if (status == -ETIMEDOUT && send_cancel(im))
		log_warn("manager", "cannot cancel an import not answered",
			 "task=%s host=%s", im->id, im->host);
	if (!c)
		; /* the client went away */
	else if (status == -ETIMEDOUT)
		api_fail(c, CN_DEADLINE_EXCEEDED,
			 "host %s did not answer the image import within %u "
			 "ms (it is told to cancel it); check the host's "
			 "canopy-agent",
			 im->host, im->m->opt.command_timeout_ms);
	else if (status)
		api_fail(c, CN_UNAVAILABLE,
			 "the image import on host %s was dropped (%s); retry",
			 im->host, cn_strerror(status));
	else
		api_fail(c,
			 st->code > CN_CANCELLED && st->code < CN_CODE_COUNT ?
				 (enum cn_code)st->code :
				 CN_INTERNAL,
			 "host %s: %.900s", im->host,
			 st->message ? st->message : "");
	drop(im);
}

static void on_call_cancel(void *arg, struct api_call *c)
{
	struct mgr_image *im = arg;

	im->c = NULL; /* the import goes on; its task is listed */
	api_fail(c, CN_CANCELLED, "the client cancelled the call");
}

static int send_import(struct mgr_image *im,
		       const Canopy__V1__ImportImageRequest *req,
		       const char *sha)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ImageImport ii = CANOPY__V1__IMAGE_IMPORT__INIT;
	struct manager *m = im->m;
	int rc;

	if (!m->bus)
		return -ENOTCONN;
	ii.task_id = im->id;
	ii.url = req->url;
	ii.datastore = im->ds;
	ii.name = im->name;
	ii.sha256 = (char *)sha;
	ii.max_bytes = m->opt.image_max_bytes;
	ii.allow_http = m->opt.image_allow_http;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_IMAGE_IMPORT;
	env.image_import = &ii;
	rc = bus_server_request(m->bus, im->host, &env,
				m->opt.command_timeout_ms, on_import_reply, im,
				NULL);
	if (rc == 0)
		im->in_flight = true;
	return rc;
}

/* Validate req; answers c and returns nonzero when it is refused. */
static int admit(struct manager *m, struct api_call *c,
		 const Canopy__V1__ImportImageRequest *req, char sha[65])
{
	char why[256];

	if (cn_url_check(req->url, m->opt.image_allow_http, why, sizeof(why))) {
		api_fail(c, CN_INVALID_ARGUMENT, "%s", why);
		return 1;
	}
	if (!mgr_name_valid(MGR_NAME_VM, req->datastore)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "datastore name '%.64s' is not valid: 1..63 of a-z, "
			 "0-9 and '-'",
			 req->datastore);
		return 1;
	}
	if (!mgr_image_name_valid(req->name)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "file name '%.130s' is not valid: 1..%d bytes of "
			 "A-Z a-z 0-9 . _ - in '/'-separated parts",
			 req->name, MGR_IMAGE_NAME_MAX);
		return 1;
	}
	if (!mgr_sha256_parse(req->sha256, sha)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "sha256 must be 64 hex digits (or left out)");
		return 1;
	}
	for (struct mgr_image *im = m->images; im; im = im->next)
		if (strcmp(im->ds, req->datastore) == 0 &&
		    strcmp(im->name, req->name) == 0) {
			api_fail(c, CN_ALREADY_EXISTS,
				 "%s is already being imported to datastore "
				 "%s by task %s",
				 req->name, req->datastore, im->id);
			return 1;
		}
	return 0;
}

void api_import_image(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ImportImageRequest *req = (const void *)r;
	struct manager *m = arg;
	struct mgr_image *im;
	struct mgr_host *h;
	char sha[65];
	int rc;

	if (admit(m, c, req, sha))
		return;
	h = mgr_ds_host_pick(m, c, req->datastore);
	if (!h)
		return;
	im = calloc(1, sizeof(*im));
	if (!im || mgr_task_id_format(im->id, sizeof(im->id), mgr_unix_ms(),
				      ++m->task_counter)) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory; retry");
		free(im);
		return;
	}
	im->m = m;
	im->c = c;
	snprintf(im->host, sizeof(im->host), "%s", h->rec->id);
	snprintf(im->ds, sizeof(im->ds), "%s", req->datastore);
	snprintf(im->name, sizeof(im->name), "%s", req->name);
	cn_url_redact(req->url, im->safe_url, sizeof(im->safe_url));
	rc = send_import(im, req, sha);
	if (rc) {
		api_fail(c, CN_UNAVAILABLE,
			 "cannot ask host %s to import: %s; retry when it is "
			 "connected",
			 im->host, cn_strerror(rc));
		free(im);
		return;
	}
	im->next = m->images;
	m->images = im;
	api_call_on_cancel(c, on_call_cancel, im);
}

/* The running import of task id on host, or NULL. */
static struct mgr_image *running(struct manager *m, const char *host,
				 const char *id)
{
	struct mgr_image *im = id ? find(m, id) : NULL;

	return im && im->rec && strcmp(im->host, host) == 0 ? im : NULL;
}

void mgr_image_progress(struct manager *m, const char *host,
			const Canopy__V1__ImageProgress *p)
{
	struct mgr_image *im = running(m, host, p->task_id);
	Canopy__V1__Task *rec;
	uint32_t pct;
	char phase[MGR_KEY_MAX + 96];

	if (!im)
		return;
	im->heard_ms = sys_mono_ms();
	if (im->cancelling)
		return;
	rec = im->rec;
	/* 99 at most: 100 is for the end, after the checksum and rename. */
	pct = p->total_bytes ?
		      (uint32_t)CN_MIN(99.0, (double)p->done_bytes * 100.0 /
						     (double)p->total_bytes) :
		      0;
	snprintf(phase, sizeof(phase),
		 "downloading on host %s: %.1f of %.1f MiB%s", im->host,
		 (double)p->done_bytes / 1048576.0,
		 (double)p->total_bytes / 1048576.0,
		 p->retries ? " (resumed after a failure)" : "");
	if (pct == rec->progress && strcmp(phase, rec->phase) == 0)
		return;
	rec->progress = pct;
	if (mgr_set_str(&rec->phase, phase) == 0)
		mgr_task_update(m, rec);
}

void mgr_image_done(struct manager *m, const char *host,
		    const Canopy__V1__ImageDone *d)
{
	struct mgr_image *im = running(m, host, d->task_id);
	const Canopy__V1__Status *st = d->status;
	char msg[1400];
	enum cn_code code;

	if (!im) {
		log_warn("manager", "result of an unknown image import",
			 "host=%s task=%.64s", host,
			 d->task_id ? d->task_id : "");
		return;
	}
	/* A result without a status is not a success (a broken agent). */
	code = !st		 ? CN_INTERNAL :
	       st->code == CN_OK ? CN_OK :
	       st->code > 0 && st->code < CN_CODE_COUNT ?
				   (enum cn_code)st->code :
				   CN_INTERNAL;
	if (code == CN_OK)
		snprintf(msg, sizeof(msg),
			 "image %s imported to datastore %s by host %s "
			 "(%" PRIu64 " bytes, sha256 %.64s)",
			 im->name, im->ds, im->host, d->size,
			 d->sha256 ? d->sha256 : "");
	else
		snprintf(msg, sizeof(msg), "host %s: %.1000s", im->host,
			 st && st->message ?
				 st->message :
				 "the import ended without a status");
	end(im, code, msg);
}

int mgr_image_cancel(struct manager *m, struct api_call *c, const char *id)
{
	struct mgr_image *im = id ? find(m, id) : NULL;
	int rc;

	if (!im || !im->rec)
		return 0;
	if (!im->cancelling) {
		rc = send_cancel(im);
		if (rc) {
			api_fail(c, CN_UNAVAILABLE,
				 "cannot tell host %s to cancel task %s: %s; "
				 "retry",
				 im->host, im->id, cn_strerror(rc));
			return 1;
		}
		im->cancelling = true;
		mgr_set_str(&im->rec->phase, "cancelling");
		mgr_task_update(m, im->rec);
	}
	api_reply(c, &im->rec->base);
	return 1;
}

void mgr_images_host_down(struct manager *m, const char *hid)
{
	struct mgr_image *im, *next;
	char msg[MGR_KEY_MAX * 2 + MGR_IMAGE_NAME_MAX * 2 + 200];

	for (im = m->images; im; im = next) {
		next = im->next;
		if (!im->rec || strcmp(im->host, hid) != 0)
			continue;
		snprintf(msg, sizeof(msg),
			 "host %s disconnected during the import; check "
			 "datastore %s for %s or %s.part and import again",
			 hid, im->ds, im->name, im->name);
		end(im, CN_UNAVAILABLE, msg);
	}
}

void mgr_images_stop(struct manager *m)
{
	struct mgr_image *im;

	if (m->image_timer)
		(void)loop_timer_del(m->l, m->image_timer);
	m->image_timer = 0;
	while ((im = m->images)) {
		if (im->c)
			api_fail(im->c, CN_UNAVAILABLE,
				 "this manager stepped down; check the task "
				 "list on the new leader");
		im->c = NULL;
		drop(im);
	}
}
