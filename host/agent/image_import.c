/* canopy-agent: ImageImport and ImageCancel from the manager: decode,
 * validate, start the download worker; progress every second; ImageDone. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datastore/ds.h"
#include "host/agent/agent.h"
#include "host/agent/image.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

static int task_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > AGENT_IMAGE_TASK_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ-",
			    id[i]))
			return 0;
	return 1;
}

static struct agent_image *find(struct agent *ag, const char *task_id)
{
	struct agent_image *im;

	for (im = ag->images; im; im = im->next)
		if (strcmp(im->task_id, task_id) == 0)
			return im;
	return NULL;
}

static size_t count(const struct agent *ag)
{
	size_t n = 0;

	for (const struct agent_image *im = ag->images; im; im = im->next)
		n++;
	return n;
}

static void unlink_free(struct agent *ag, struct agent_image *im)
{
	struct agent_image **pp;

	for (pp = &ag->images; *pp; pp = &(*pp)->next)
		if (*pp == im) {
			*pp = im->next;
			break;
		}
	if (im->timer)
		(void)loop_timer_del(ag->loop, im->timer);
	if (im->started)
		pthread_join(im->thread, NULL);
	agent_ds_slot_put(ag, im->slot);
	free(im);
}

static int send_progress(struct loop *l, uint64_t id, void *arg)
{
	struct agent_image *im = arg;
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ImageProgress p = CANOPY__V1__IMAGE_PROGRESS__INIT;

	(void)l;
	(void)id;
	p.task_id = im->task_id;
	p.done_bytes = atomic_load(&im->done);
	p.total_bytes = atomic_load(&im->total);
	p.retries = atomic_load(&im->retries);
	env.body_case = CANOPY__V1__ENVELOPE__BODY_IMAGE_PROGRESS;
	env.image_progress = &p;
	if (bus_client_send(im->ag->bus, &env) < 0)
		log_debug("agent", "image progress not sent", "task=%s",
			  im->task_id);
	return AGENT_IMAGE_PROGRESS_MS;
}

void agent_image_accepted(void *arg)
{
	struct agent_image *im = arg;
	struct agent *ag = im->ag;
	int err = 0;

	agent_reply(ag, im->reply_id, im->accept_code, im->accept_msg);
	im->reply_id = 0;
	if (im->accept_code) {
		log_info("agent", "image import refused",
			 "task=%s code=%s msg=\"%s\"", im->task_id,
			 cn_code_name((enum cn_code)im->accept_code),
			 im->accept_msg);
		unlink_free(ag, im);
		return;
	}
	log_info("agent", "image import started",
		 "task=%s url=\"%s\" datastore=%s name=%s", im->task_id,
		 im->safe_url, im->ds, im->name);
	im->timer = loop_timer_add(ag->loop, AGENT_IMAGE_PROGRESS_MS,
				   send_progress, im, &err);
	if (!im->timer)
		log_warn("agent", "no progress timer for an image import",
			 "task=%s err=\"%s\"", im->task_id, cn_strerror(err));
}

void agent_image_finished(void *arg)
{
	struct agent_image *im = arg;
	struct agent *ag = im->ag;
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ImageDone d = CANOPY__V1__IMAGE_DONE__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	int rc;

	st.code = im->code;
	st.message = im->msg;
	d.task_id = im->task_id;
	d.status = &st;
	d.size = im->size;
	d.sha256 = im->sha_hex;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_IMAGE_DONE;
	env.image_done = &d;
	rc = bus_client_send(ag->bus, &env);
	log_info("agent", "image import done",
		 "task=%s url=\"%s\" name=%s code=%s size=%" PRIu64
		 " sha256=%s msg=\"%s\"%s",
		 im->task_id, im->safe_url, im->name,
		 cn_code_name((enum cn_code)im->code), im->size, im->sha_hex,
		 im->msg, rc < 0 ? " (manager not told: not connected)" : "");
	unlink_free(ag, im);
}

/* Check req; fill im. 0, or a cn_code with msg. */
static int check(struct agent *ag, const Canopy__V1__ImageImport *req,
		 struct agent_image *im, char *msg, size_t len)
{
	char err[256];

	if (!task_id_ok(req->task_id)) {
		snprintf(msg, len, "task_id must be 1..%d of [A-Za-z0-9-]",
			 AGENT_IMAGE_TASK_MAX);
		return CN_INVALID_ARGUMENT;
	}
	if (cn_url_check(req->url, req->allow_http, err, sizeof(err)) < 0) {
		snprintf(msg, len, "%s", err);
		return CN_INVALID_ARGUMENT;
	}
	if (strlen(req->name) > AGENT_IMAGE_NAME_MAX ||
	    ds_name_check(req->name, err, sizeof(err)) < 0) {
		snprintf(msg, len,
			 "bad file name '%.140s': at most %d bytes "
			 "of [A-Za-z0-9._-] parts",
			 req->name, AGENT_IMAGE_NAME_MAX);
		return CN_INVALID_ARGUMENT;
	}
	im->check = req->sha256[0] != '\0';
	if (im->check && agent_image_hex_parse(req->sha256, im->want) < 0) {
		snprintf(msg, len, "sha256 must be 64 hex digits");
		return CN_INVALID_ARGUMENT;
	}
	if (!req->max_bytes) {
		snprintf(msg, len, "max_bytes must be > 0");
		return CN_INVALID_ARGUMENT;
	}
	im->dev = strlen(req->datastore) < sizeof(im->ds) ?
			  agent_ds_dev(ag, req->datastore) :
			  NULL;
	if (!im->dev) {
		snprintf(msg, len,
			 "datastore %.64s is not attached to this host",
			 req->datastore);
		return CN_NOT_FOUND;
	}
	if (find(ag, req->task_id)) {
		snprintf(msg, len, "task %s is already importing here",
			 req->task_id);
		return CN_ALREADY_EXISTS;
	}
	if (count(ag) >= AGENT_IMAGES_MAX) {
		snprintf(msg, len,
			 "%d image imports already run on this host; retry "
			 "when one has ended",
			 AGENT_IMAGES_MAX);
		return CN_RESOURCE_EXHAUSTED;
	}
	return CN_OK;
}

static void fill(struct agent *ag, const Canopy__V1__ImageImport *req,
		 struct agent_image *im, uint64_t rid)
{
	im->ag = ag;
	im->reply_id = rid;
	im->max_bytes = req->max_bytes;
	im->allow_http = req->allow_http;
	im->ca_file = ag->opts.image_ca_file;
	snprintf(im->task_id, sizeof(im->task_id), "%s", req->task_id);
	snprintf(im->url, sizeof(im->url), "%s", req->url);
	cn_url_redact(req->url, im->safe_url, sizeof(im->safe_url));
	snprintf(im->ds, sizeof(im->ds), "%s", req->datastore);
	snprintf(im->name, sizeof(im->name), "%s", req->name);
	snprintf(im->tmp, sizeof(im->tmp), "%s" AGENT_IMAGE_TMP_SUFFIX,
		 req->name);
	atomic_init(&im->cancel, 0);
	atomic_init(&im->done, 0);
	atomic_init(&im->total, 0);
	atomic_init(&im->retries, 0);
}

void agent_image_handle(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__ImageImport *req = env->image_import;
	struct agent_image *im = calloc(1, sizeof(*im));
	char msg[512];
	int code, rc;

	if (!im) {
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	code = check(ag, req, im, msg, sizeof(msg));
	if (code == CN_OK) {
		rc = agent_ds_slot_get(ag, &im->slot);
		code = rc == -EOPNOTSUPP ? CN_FAILED_PRECONDITION :
		       rc < 0		 ? CN_RESOURCE_EXHAUSTED :
					   CN_OK;
		snprintf(msg, sizeof(msg), "%s",
			 rc == -EOPNOTSUPP ?
				 "this agent has no datastore heartbeat "
				 "slots; start it with --ds-slots FIRST-LAST" :
				 "every datastore heartbeat slot of this "
				 "agent is in use; retry later");
	}
	if (code != CN_OK) {
		if (agent_bad_log_ok(ag))
			log_warn("agent", "image import refused",
				 "request=%llu msg=\"%s\"",
				 (unsigned long long)env->request_id, msg);
		agent_reply(ag, env->request_id, code, msg);
		free(im);
		return;
	}
	fill(ag, req, im, env->request_id);
	im->next = ag->images;
	ag->images = im;
	rc = -pthread_create(&im->thread, NULL, agent_image_worker, im);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "cannot start a worker: %s",
			 cn_strerror(rc));
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED, msg);
		unlink_free(ag, im);
		return;
	}
	im->started = 1;
}

void agent_image_cancel(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const char *id = env->image_cancel->task_id;
	struct agent_image *im = task_id_ok(id) ? find(ag, id) : NULL;
	char msg[160];

	if (!im) {
		snprintf(msg, sizeof(msg),
			 "no image import of task %.64s runs "
			 "on this host",
			 id);
		agent_reply(ag, env->request_id, CN_NOT_FOUND, msg);
		return;
	}
	atomic_store(&im->cancel, 1);
	log_info("agent", "image import cancelling", "task=%s", id);
	agent_reply(ag, env->request_id, CN_OK, "");
}

void agent_images_stop_all(struct agent *ag)
{
	struct agent_image *im;

	for (im = ag->images; im; im = im->next)
		atomic_store(&im->cancel, 1);
	while ((im = ag->images)) {
		ag->images = im->next;
		if (im->started)
			pthread_join(im->thread, NULL);
		free(im);
	}
}
