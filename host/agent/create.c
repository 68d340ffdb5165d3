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

/* Remove the disks of spec that CREATE made (those with a size), up to n. */
static void disks_remove(const char *dir, const Canopy__V1__VmSpec *spec,
			 size_t n)
{
	char path[AGENT_PATH_MAX + 320];

	for (size_t i = 0; i < n && i < spec->n_disks; i++)
		if (spec->disks[i]->size_bytes &&
		    agent_disk_path(dir, spec->disks[i], path, sizeof(path)) ==
			    0)
			(void)unlink(path);
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

/* Worker: disks, then the spec file (last: its presence means complete). */
static void *create_work(void *arg)
{
	struct agent_create_job *j = arg;
	char path[sizeof(j->dir) + 16];
	size_t i;
	int rc = 0;

	for (i = 0; i < j->spec->n_disks && !rc; i++)
		if (j->spec->disks[i]->size_bytes)
			rc = disk_create(j->dir, i, j->spec->disks[i], j->msg,
					 sizeof(j->msg));
	if (!rc) {
		snprintf(path, sizeof(path), "%s/%s", j->dir, AGENT_SPEC_FILE);
		rc = agent_spec_save(path, j->spec);
		if (rc < 0)
			snprintf(j->msg, sizeof(j->msg),
				 "cannot store the spec of %s: %s", j->id,
				 cn_strerror(rc));
	}
	if (rc < 0) {
		disks_remove(j->dir, j->spec, rc == -EEXIST ? i - 1 : i);
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
	size_t n = canopy__v1__vm_spec__get_packed_size(spec);
	uint8_t *buf = malloc(n ? n : 1);
	Canopy__V1__VmSpec *copy;

	if (!buf)
		return NULL;
	canopy__v1__vm_spec__pack(spec, buf);
	copy = canopy__v1__vm_spec__unpack(NULL, n, buf);
	free(buf);
	return copy;
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
	snprintf(j->id, sizeof(j->id), "%s", cmd->vm_id);
	snprintf(j->dir, sizeof(j->dir), "%s/%.*s", ag->vms_dir,
		 AGENT_VM_ID_MAX, cmd->vm_id);
	/* The directory is the claim on the id (also against a CREATE still
	 * running in a worker). */
	if (agent_vm_find(ag, j->id) || mkdir(j->dir, 0700) < 0) {
		rc = agent_vm_find(ag, j->id) || errno == EEXIST ? -EEXIST :
								   -errno;
		snprintf(j->msg, sizeof(j->msg), "VM %s %s", j->id,
			 rc == -EEXIST ? "already exists on this host; delete "
					 "it first or use another id" :
					 cn_strerror(rc));
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
	agent_reply(ag, rid, cn_code_from_errno(rc),
		    j ? j->msg : "out of memory");
	if (j)
		job_free(j);
}
