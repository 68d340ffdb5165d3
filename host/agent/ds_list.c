/* canopy-agent: DatastoreList from the manager: the files of a datastore,
 * read (read-only, no locks) by a worker thread, answered with
 * DatastoreFiles. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datastore/ds.h"
#include "host/agent/agent.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

/* Most files one answer lists. */
#define AGENT_DS_LIST_MAX 4096

struct agent_ds_list {
	struct agent_ds_list *next;
	struct agent *ag;
	uint64_t rid;
	char name[64];
	const char *dev;
	pthread_t thread;
	/* worker */
	int code;
	char msg[400];
	Canopy__V1__DatastoreFile *files;
	Canopy__V1__DatastoreFile **ptrs;
	char (*names)[DS_FILE_NAME_MAX + 1];
	size_t n;
};

static void job_free(struct agent_ds_list *j)
{
	struct agent_ds_list **pp;

	for (pp = &j->ag->ds_lists; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	free(j->files);
	free(j->ptrs);
	free(j->names);
	free(j);
}

/* Loop thread: answer and drop the job. */
static void done(void *arg)
{
	struct agent_ds_list *j = arg;
	Canopy__V1__Envelope req = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope rep = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__DatastoreFiles df = CANOPY__V1__DATASTORE_FILES__INIT;
	int rc;

	pthread_join(j->thread, NULL);
	if (j->code) {
		agent_reply(j->ag, j->rid, j->code, j->msg);
		job_free(j);
		return;
	}
	df.files = j->ptrs;
	df.n_files = j->n;
	rep.body_case = CANOPY__V1__ENVELOPE__BODY_DATASTORE_FILES;
	rep.datastore_files = &df;
	req.request_id = j->rid;
	rc = bus_client_reply(j->ag->bus, &req, &rep);
	if (rc < 0)
		log_warn("agent", "datastore list not sent",
			 "datastore=%s err=\"%s\"", j->name, cn_strerror(rc));
	job_free(j);
}

/* One inode into the next entry; 1 when it is a file. */
static int one(struct agent_ds_list *j, const struct ds *ds, uint32_t i)
{
	Canopy__V1__DatastoreFile *f = &j->files[j->n];
	struct ds_inode ino;
	uint64_t blocks = 0;
	char why[160];

	if (ds_inode_read(ds, i, &ino) != 0 ||
	    ds_file_blocks(ds, &ino, &blocks) < 0)
		return 0; /* free, or unreadable: canopy-ds fsck tells */
	/* The disk is not trusted: only names we would accept go out. */
	if (ds_name_check(ino.name, why, sizeof(why)) < 0)
		snprintf(ino.name, sizeof(ino.name), "<invalid name>");
	canopy__v1__datastore_file__init(f);
	snprintf(j->names[j->n], sizeof(j->names[j->n]), "%s", ino.name);
	f->name = j->names[j->n];
	f->size_bytes = ino.size;
	f->allocated_bytes = blocks * ds->g.block_size;
	f->modified_unix_ms = ino.mtime_ms;
	j->ptrs[j->n] = f;
	return 1;
}

static void *worker(void *arg)
{
	struct agent_ds_list *j = arg;
	char err[300] = "";
	struct ds ds;
	size_t max;

	if (ds_open(&ds, j->dev, DS_RDONLY, err, sizeof(err)) < 0) {
		j->code = CN_UNAVAILABLE;
		snprintf(j->msg, sizeof(j->msg), "cannot open datastore %s: %s",
			 j->name, err);
		goto out;
	}
	max = CN_MIN((size_t)ds.g.max_locks, (size_t)AGENT_DS_LIST_MAX);
	j->files = calloc(max, sizeof(*j->files));
	j->ptrs = calloc(max, sizeof(*j->ptrs));
	j->names = calloc(max, sizeof(*j->names));
	if (!j->files || !j->ptrs || !j->names) {
		j->code = CN_RESOURCE_EXHAUSTED;
		snprintf(j->msg, sizeof(j->msg), "out of memory");
	}
	for (uint32_t i = 1; !j->code && i < ds.g.max_locks && j->n < max; i++)
		j->n += (size_t)one(j, &ds, i);
	ds_close(&ds);
out:
	/* loop_post only fails for lack of memory: try again shortly. */
	while (loop_post(j->ag->loop, done, j) < 0)
		sys_sleep_us(10000);
	return NULL;
}

void agent_ds_list_handle(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const char *name = env->datastore_list->datastore;
	const char *dev = strlen(name) < 64 ? agent_ds_dev(ag, name) : NULL;
	struct agent_ds_list *j;
	char msg[160];
	int rc;

	if (!dev) {
		snprintf(msg, sizeof(msg),
			 "datastore %.64s is not attached to this host", name);
		agent_reply(ag, env->request_id, CN_NOT_FOUND, msg);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	j->ag = ag;
	j->rid = env->request_id;
	j->dev = dev;
	snprintf(j->name, sizeof(j->name), "%s", name);
	rc = -pthread_create(&j->thread, NULL, worker, j);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "cannot start a worker: %s",
			 cn_strerror(rc));
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED, msg);
		free(j);
		return;
	}
	j->next = ag->ds_lists;
	ag->ds_lists = j;
}

void agent_ds_list_join_all(struct agent *ag)
{
	struct agent_ds_list *j;

	while ((j = ag->ds_lists)) {
		pthread_join(j->thread, NULL);
		job_free(j); /* its posted answer is never run */
	}
}
