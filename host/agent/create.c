/* canopy-agent: CREATE. The VM directory is claimed on the loop thread
 * (mkdir), the disks and the spec file (fsync) are written by a worker
 * thread that posts the result back to the loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/pb.h"
#include "lib/sys.h"

/* One CREATE in flight: owned by the worker until it posts, then by the
 * loop (ag->jobs lists it from start to join). */
struct agent_create_job {
	struct agent_create_job *next;
	struct agent *ag;
	pthread_t thread;
	uint64_t rid;
	char id[AGENT_VM_ID_MAX + 1];
	char dir[AGENT_PATH_MAX + AGENT_VM_ID_MAX + 2];
	Canopy__V1__VmSpec *spec;
	const char *ds_dev[AGENT_DISKS_MAX]; /* volume of a datastore disk */
	uint32_t slot; /* heartbeat slot for datastore changes, 0: none */
	unsigned char made[AGENT_DISKS_MAX]; /* disks this CREATE made */
	int rc; /* the worker's result */
	char msg[512];
};

int agent_dir_remove(const char *dir)
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

/* Undo a CREATE's directory; a failure is only logged (any thread). */
static void cleanup_dir(const char *dir)
{
	int rc = agent_dir_remove(dir);

	if (rc < 0 && rc != -ENOENT)
		log_warn("agent", "cannot remove vm directory",
			 "dir=%s err=\"%s\"", dir, cn_strerror(rc));
}

/* Create one sparse disk with O_EXCL. 0 or -errno with msg. */
static int disk_create(const char *dir, size_t i, const Canopy__V1__DiskSpec *d,
		       char *msg, size_t len)
{
	char path[AGENT_PATH_MAX + 320];
	int rc = agent_disk_path(dir, d, path, sizeof(path)), fd;

	fd = rc < 0 ? rc : sys_open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		snprintf(msg, len, "cannot create disk %zu (%.300s): %s%s", i,
			 path, cn_strerror(fd),
			 fd == -EEXIST ? "; give size 0 to use the existing "
					 "file, or delete it" :
					 "");
		return fd;
	}
	if (ftruncate(fd, (off_t)d->size_bytes) < 0) {
		rc = -errno;
		snprintf(msg, len, "cannot size disk %zu (%.300s): %s", i, path,
			 cn_strerror(rc));
	}
	sys_close(fd);
	if (rc < 0)
		(void)unlink(path);
	return rc;
}

/* Undo the disks this CREATE made. */
static void disks_remove(struct agent_create_job *j)
{
	char path[AGENT_PATH_MAX + 320], name[AGENT_VM_ID_MAX + 1], msg[512];
	const char *file;

	for (size_t i = 0; i < j->spec->n_disks; i++) {
		const Canopy__V1__DiskSpec *d = j->spec->disks[i];

		if (!j->made[i])
			continue;
		if (j->ds_dev[i] &&
		    agent_ds_path_split(d->path, name, sizeof(name), &file) ==
			    1) {
			if (agent_ds_file_change(j->ds_dev[i], j->slot, file, 0,
						 1, msg, sizeof(msg)) < 0)
				log_warn("agent", "datastore disk not removed",
					 "why=\"%s\"", msg);
		} else if (agent_disk_path(j->dir, d, path, sizeof(path)) ==
			   0) {
			(void)unlink(path);
		}
	}
}

/* Make disk i of the job: a host file or a datastore file. */
static int disk_make(struct agent_create_job *j, size_t i)
{
	const Canopy__V1__DiskSpec *d = j->spec->disks[i];
	char name[AGENT_VM_ID_MAX + 1];
	const char *file;

	if (!d->size_bytes)
		return 0;
	if (j->ds_dev[i] &&
	    agent_ds_path_split(d->path, name, sizeof(name), &file) == 1)
		return agent_ds_file_change(j->ds_dev[i], j->slot, file,
					    d->size_bytes, 0, j->msg,
					    sizeof(j->msg));
	return disk_create(j->dir, i, d, j->msg, sizeof(j->msg));
}

/* Worker: disks, then the spec file (last: its presence means complete). */
static void *create_work(void *arg)
{
	struct agent_create_job *j = arg;
	char path[sizeof(j->dir) + 16];
	size_t i;
	int rc = 0;

	for (i = 0; i < j->spec->n_disks && !rc; i++) {
		rc = disk_make(j, i);
		j->made[i] = rc == 0 && j->spec->disks[i]->size_bytes;
	}
	if (!rc) {
		snprintf(path, sizeof(path), "%s/%s", j->dir, AGENT_SPEC_FILE);
		rc = agent_spec_save(path, j->spec);
		if (rc < 0)
			snprintf(j->msg, sizeof(j->msg),
				 "cannot store the spec of %s: %s", j->id,
				 cn_strerror(rc));
	}
	if (rc < 0) {
		disks_remove(j);
		cleanup_dir(j->dir);
	}
	j->rc = rc;
	/* loop_post only fails for lack of memory: try again shortly. */
	while (loop_post(j->ag->loop, agent_create_done, j) < 0)
		sys_sleep_us(10000);
	return NULL;
}

static void job_unlink(struct agent *ag, struct agent_create_job *j)
{
	for (struct agent_create_job **p = &ag->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
}

static void job_free(struct agent_create_job *j)
{
	if (j->spec)
		canopy__v1__vm_spec__free_unpacked(j->spec, NULL);
	free(j);
}

void agent_create_done(void *arg)
{
	struct agent_create_job *j = arg;
	struct agent *ag = j->ag;
	struct agent_vm *vm;

	pthread_join(j->thread, NULL);
	job_unlink(ag, j);
	agent_ds_slot_put(ag, j->slot);
	if (j->rc == 0 && agent_vm_add(ag, j->id, j->spec, &vm) == 0) {
		j->spec = NULL; /* the VM owns it now */
		log_info("agent", "vm created", "vm=%s", vm->id);
		agent_reply(ag, j->rid, CN_OK, "");
		agent_vm_report(ag, vm);
	} else if (j->rc == 0) {
		cleanup_dir(j->dir);
		agent_reply(ag, j->rid, CN_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		agent_reply(ag, j->rid, cn_code_from_errno(j->rc), j->msg);
	}
	job_free(j);
}

void agent_create_join_all(struct agent *ag)
{
	while (ag->jobs) {
		struct agent_create_job *j = ag->jobs;

		pthread_join(j->thread, NULL);
		job_unlink(ag, j);
		job_free(j); /* its posted call is dropped with the loop */
	}
}

/* Our own copy of a spec (the envelope's belongs to the bus), or NULL. */
static Canopy__V1__VmSpec *spec_copy(const Canopy__V1__VmSpec *spec)
{
	return (Canopy__V1__VmSpec *)cn_pb_copy(&spec->base);
}

/* Why the id could not be claimed, in j->msg; the -errno. */
static int claim_failed(struct agent *ag, struct agent_create_job *j)
{
	int rc = agent_vm_find(ag, j->id) || errno == EEXIST ? -EEXIST : -errno;
	int busy = 0;

	for (struct agent_create_job *o = ag->jobs; o; o = o->next)
		busy |= strcmp(o->id, j->id) == 0;
	if (rc == -EEXIST && !agent_vm_find(ag, j->id) && !busy)
		snprintf(j->msg, sizeof(j->msg),
			 "VM %s: its directory %.300s exists but holds no VM "
			 "this agent could load (see its log); remove it or "
			 "use another id",
			 j->id, j->dir);
	else
		snprintf(j->msg, sizeof(j->msg), "VM %s %s", j->id,
			 rc == -EEXIST ? "already exists on this host; delete "
					 "it first or use another id" :
					 cn_strerror(rc));
	return rc;
}

/* Volumes of the datastore disks and a slot to change them. 0 or -errno
 * with j->msg. */
static int ds_prepare(struct agent *ag, struct agent_create_job *j,
		      const Canopy__V1__VmSpec *spec)
{
	char name[AGENT_VM_ID_MAX + 1];
	const char *file;
	int need = 0, rc;

	for (size_t i = 0; i < spec->n_disks; i++) {
		const Canopy__V1__DiskSpec *d = spec->disks[i];

		if (agent_ds_path_split(d->path, name, sizeof(name), &file) !=
		    1)
			continue;
		j->ds_dev[i] = agent_ds_dev(ag, name);
		if (!j->ds_dev[i]) {
			snprintf(j->msg, sizeof(j->msg),
				 "datastore %s is not attached to this host; "
				 "start canopy-agent with --datastore %s=DEV",
				 name, name);
			return -EBADFD;
		}
		need |= d->size_bytes != 0;
	}
	if (!need)
		return 0;
	rc = agent_ds_slot_get(ag, &j->slot);
	if (rc == -EOPNOTSUPP)
		snprintf(j->msg, sizeof(j->msg),
			 "this agent has no datastore heartbeat slots; start "
			 "it with --ds-slots FIRST-LAST");
	else if (rc < 0)
		snprintf(j->msg, sizeof(j->msg),
			 "every datastore heartbeat slot of this agent is in "
			 "use; retry later or give more with --ds-slots");
	return rc == -EOPNOTSUPP ? -EBADFD : rc;
}

void agent_create_start(struct agent *ag, uint64_t rid,
			const Canopy__V1__VmCommand *cmd)
{
	struct agent_create_job *j = calloc(1, sizeof(*j));
	int rc = j ? agent_spec_check(cmd->spec, j->msg, sizeof(j->msg)) :
		     -ENOMEM;

	if (rc < 0)
		goto fail;
	j->ag = ag;
	j->rid = rid;
	rc = ds_prepare(ag, j, cmd->spec);
	if (rc < 0)
		goto fail;
	snprintf(j->id, sizeof(j->id), "%s", cmd->vm_id);
	snprintf(j->dir, sizeof(j->dir), "%s/%.*s", ag->vms_dir,
		 AGENT_VM_ID_MAX, cmd->vm_id);
	/* The directory is the claim on the id (also against a CREATE still
	 * running in a worker). */
	if (agent_vm_find(ag, j->id) || mkdir(j->dir, 0700) < 0) {
		rc = claim_failed(ag, j);
		goto fail;
	}
	j->spec = spec_copy(cmd->spec);
	rc = j->spec ? -pthread_create(&j->thread, NULL, create_work, j) :
		       -ENOMEM;
	if (rc < 0) {
		cleanup_dir(j->dir);
		snprintf(j->msg, sizeof(j->msg), "cannot start the work: %s",
			 cn_strerror(rc));
		goto fail;
	}
	j->next = ag->jobs;
	ag->jobs = j;
	return;

fail:
	agent_reply(ag, rid,
		    rc == -EBADFD ? CN_FAILED_PRECONDITION :
				    cn_code_from_errno(rc),
		    j ? j->msg : "out of memory");
	if (j) {
		agent_ds_slot_put(ag, j->slot);
		job_free(j);
	}
}
