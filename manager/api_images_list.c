/* canopy-managerd: ImageService.ListImages: the files of a datastore, read
 * by a connected host that has it (DatastoreList on the bus). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/bus.h"
#include "lib/log.h"
#include "manager/manager.h"

/* How long the manager waits for the host's list. */
#define MGR_DS_LIST_TIMEOUT_MS 10000

struct list_req {
	struct api_call *c; /* NULL once the client went away */
	char host[MGR_KEY_MAX];
	char ds[MGR_KEY_MAX];
};

static void on_cancel(void *arg, struct api_call *c)
{
	struct list_req *r = arg;

	r->c = NULL; /* the bus callback frees r */
	api_fail(c, CN_CANCELLED, "the client cancelled the call");
}

static void answer(struct list_req *r, int status,
		   const Canopy__V1__Envelope *env)
{
	Canopy__V1__ListImagesResponse resp =
		CANOPY__V1__LIST_IMAGES_RESPONSE__INIT;

	if (status == -ETIMEDOUT) {
		api_fail(r->c, CN_DEADLINE_EXCEEDED,
			 "host %s did not list datastore %s within %u ms; "
			 "check the host's canopy-agent",
			 r->host, r->ds, MGR_DS_LIST_TIMEOUT_MS);
	} else if (status) {
		api_fail(r->c, CN_UNAVAILABLE,
			 "the list of datastore %s on host %s was dropped "
			 "(%s); retry",
			 r->ds, r->host, cn_strerror(status));
	} else if (env->body_case ==
		   CANOPY__V1__ENVELOPE__BODY_DATASTORE_FILES) {
		resp.files = env->datastore_files->files;
		resp.n_files = env->datastore_files->n_files;
		api_reply(r->c, &resp.base);
	} else if (!mgr_fail_agent(r->c, r->host, env)) {
		api_fail(r->c, CN_INTERNAL,
			 "host %s sent no file list; check the version of its "
			 "canopy-agent",
			 r->host);
	}
}

static void on_reply(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct list_req *r = arg;

	if (r->c)
		answer(r, status, env);
	free(r);
}

void api_list_images(void *arg, struct api_call *c, const ProtobufCMessage *rq)
{
	const Canopy__V1__ListImagesRequest *req = (const void *)rq;
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__DatastoreList dl = CANOPY__V1__DATASTORE_LIST__INIT;
	struct manager *m = arg;
	struct mgr_host *h;
	struct list_req *r;
	int rc;

	if (!mgr_name_valid(MGR_NAME_VM, req->datastore)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "datastore name '%.64s' is not valid: 1..63 of a-z, "
			 "0-9 and '-'",
			 req->datastore);
		return;
	}
	h = mgr_ds_host_pick(m, c, req->datastore);
	if (!h)
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory; retry");
		return;
	}
	r->c = c;
	snprintf(r->host, sizeof(r->host), "%s", h->rec->id);
	snprintf(r->ds, sizeof(r->ds), "%s", req->datastore);
	dl.datastore = r->ds;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_DATASTORE_LIST;
	env.datastore_list = &dl;
	rc = m->bus ? bus_server_request(m->bus, r->host, &env,
					 MGR_DS_LIST_TIMEOUT_MS, on_reply, r,
					 NULL) :
		      -ENOTCONN;
	if (rc) {
		api_fail(c, CN_UNAVAILABLE,
			 "cannot ask host %s for the files of datastore %s: "
			 "%s; retry",
			 r->host, r->ds, cn_strerror(rc));
		free(r);
		return;
	}
	api_call_on_cancel(c, on_cancel, r);
}
