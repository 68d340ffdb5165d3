/* canopy-agent: datastores (--datastore NAME=DEV): names to volumes, the
 * heartbeat slots (--ds-slots) the agent gives to its VMMs' datastore
 * disks and to its own changes, and creating or removing disk files on a
 * volume as a short-lived host of it (worker threads only). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "host/agent/agent.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/sys.h"

/* How often the session's heartbeat thread looks at its stop flag. */
#define DS_SESS_TICK_US 20000

const char *agent_ds_dev(const struct agent *ag, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < ag->opts.n_datastores; i++) {
		const char *d = ag->opts.datastores[i];

		if (strncmp(d, name, n) == 0 && d[n] == '=')
			return d + n + 1;
	}
	return NULL;
}

int agent_ds_slot_get(struct agent *ag, uint32_t *out)
{
	uint32_t first = ag->opts.ds_slot_first, n;

	if (!first)
		return -EOPNOTSUPP;
	n = ag->opts.ds_slot_last - first + 1;
	/* Next fit: a slot a crashed VMM left is not reused at once (joining
	 * it waits for its heartbeat to time out). */
	for (uint32_t k = 0; k < n; k++) {
		uint32_t s = first + (ag->ds_slot_next + k) % n;

		if (!(ag->ds_slots_used & (1ull << (s - 1)))) {
			ag->ds_slots_used |= 1ull << (s - 1);
			ag->ds_slot_next = (s - first + 1) % n;
			*out = s;
			return 0;
		}
	}
	return -ENOSPC;
}

void agent_ds_slot_mark(struct agent *ag, uint32_t slot)
{
	if (slot >= 1 && slot <= AGENT_DS_SLOTS_MAX)
		ag->ds_slots_used |= 1ull << (slot - 1);
}

void agent_ds_slot_put(struct agent *ag, uint32_t slot)
{
	if (slot >= 1 && slot <= AGENT_DS_SLOTS_MAX)
		ag->ds_slots_used &= ~(1ull << (slot - 1));
}

/* The agent as a host of one volume for one change: joined, renewed by a
 * thread that also applies the self-fence rule. */
struct ds_sess {
	struct ds ds;
	struct ds_host h;
	struct ds_hb_watch w;
	pthread_t hb;
	atomic_int stop, fenced;
};

static void *sess_hb(void *arg)
{
	struct ds_sess *s = arg;
	uint64_t next = sys_mono_ms() + s->ds.g.hb_interval_ms;

	while (!atomic_load(&s->stop)) {
		sys_sleep_us(DS_SESS_TICK_US);
		if (ds_hb_must_fence(&s->h, sys_mono_ns())) {
			atomic_store(&s->fenced, 1);
			return NULL;
		}
		if (sys_mono_ms() < next)
			continue;
		next = sys_mono_ms() + s->ds.g.hb_interval_ms;
		if (ds_hb_renew(&s->h) < 0)
			log_warn("agent", "datastore heartbeat renewal failed",
				 "dev=%s host=%u", s->ds.path, s->h.id);
	}
	return NULL;
}

static int sess_start(struct ds_sess *s, const char *dev, uint32_t slot,
		      char *err, size_t len)
{
	int rc;

	memset(s, 0, sizeof(*s));
	rc = ds_open(&s->ds, dev, 0, err, len);
	if (rc < 0)
		return rc;
	rc = ds_hb_join(&s->h, &s->ds, slot, "canopy-agent", err, len);
	if (rc < 0)
		goto err_close;
	ds_hb_watch_init(&s->w);
	rc = -pthread_create(&s->hb, NULL, sess_hb, s);
	if (rc < 0) {
		snprintf(err, len, "cannot start a heartbeat thread: %s",
			 cn_strerror(rc));
		goto err_leave;
	}
	return 0;

err_leave:
	if (ds_hb_leave(&s->h) < 0)
		log_warn("agent", "could not leave the datastore cleanly",
			 "dev=%s host=%u", s->ds.path, s->h.id);
err_close:
	ds_close(&s->ds);
	return rc;
}

static void sess_end(struct ds_sess *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->hb, NULL);
	if (!atomic_load(&s->fenced) && ds_hb_leave(&s->h) < 0)
		log_warn("agent", "could not leave the datastore cleanly",
			 "dev=%s host=%u", s->ds.path, s->h.id);
	ds_close(&s->ds);
}

int agent_ds_sess_open(const char *dev, uint32_t slot,
		       struct agent_ds_sess **out, char *err, size_t len)
{
	struct ds_sess *s = malloc(sizeof(*s));
	int rc;

	*out = NULL;
	if (!s) {
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	rc = sess_start(s, dev, slot, err, len);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = (struct agent_ds_sess *)s;
	return 0;
}

struct ds_host *agent_ds_sess_host(struct agent_ds_sess *as)
{
	return &((struct ds_sess *)as)->h;
}

struct ds_hb_watch *agent_ds_sess_watch(struct agent_ds_sess *as)
{
	return &((struct ds_sess *)as)->w;
}

int agent_ds_sess_fenced(struct agent_ds_sess *as)
{
	return atomic_load(&((struct ds_sess *)as)->fenced);
}

void agent_ds_sess_close(struct agent_ds_sess *as)
{
	if (!as)
		return;
	sess_end((struct ds_sess *)as);
	free(as);
}

int agent_ds_file_change(const char *dev, uint32_t slot, const char *file,
			 uint64_t size, int remove, char *msg, size_t len)
{
	struct ds_sess s;
	char err[400] = "";
	int rc = sess_start(&s, dev, slot, err, sizeof(err));

	if (rc == 0) {
		rc = remove ? ds_file_remove(&s.h, &s.w, file, err,
					     sizeof(err)) :
			      ds_file_create(&s.h, &s.w, file, size, 0, err,
					     sizeof(err));
		if (atomic_load(&s.fenced)) {
			rc = -ETIMEDOUT;
			snprintf(err, sizeof(err),
				 "heartbeat lost during the change "
				 "(self-fence)");
		}
		sess_end(&s);
	}
	if (rc < 0)
		snprintf(msg, len, "datastore %s, file %s: %s%s", dev, file,
			 err[0] ? err : cn_strerror(rc),
			 rc == -EEXIST && !remove ?
				 "; give size 0 to use the existing file" :
				 "");
	return rc;
}

/* The file that records the slots a running VMM's disks joined as, so a
 * restarted agent does not give them out again. */
#define DS_SLOTS_FILE "ds-slots"

void agent_vm_ds_release(struct agent *ag, struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 16];
	int any = 0;

	for (size_t i = 0; i < AGENT_DISKS_MAX; i++) {
		any |= vm->ds[i].slot != 0;
		agent_ds_slot_put(ag, vm->ds[i].slot);
		vm->ds[i].slot = 0;
		vm->ds[i].dev = NULL;
	}
	snprintf(path, sizeof(path), "%s/%s", vm->dir, DS_SLOTS_FILE);
	if (any)
		(void)unlink(path);
}

/* Lines "DISK SLOT" for the datastore disks of vm. */
static int slots_save(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 16], text[AGENT_DISKS_MAX * 24];
	size_t o = 0;

	for (size_t i = 0; i < AGENT_DISKS_MAX; i++)
		if (vm->ds[i].slot)
			o += (size_t)snprintf(text + o, sizeof(text) - o,
					      "%zu %u\n", i, vm->ds[i].slot);
	snprintf(path, sizeof(path), "%s/%s", vm->dir, DS_SLOTS_FILE);
	return sys_write_file_atomic(path, text, o, 0600);
}

int agent_vm_ds_assign(struct agent *ag, struct agent_vm *vm, char *msg,
		       size_t len)
{
	char name[AGENT_VM_ID_MAX + 1];
	const char *file;
	int rc = 0, any = 0;

	for (size_t i = 0; i < vm->spec->n_disks && !rc; i++) {
		if (agent_ds_path_split(vm->spec->disks[i]->path, name,
					sizeof(name), &file) != 1)
			continue;
		any = 1;
		vm->ds[i].dev = agent_ds_dev(ag, name);
		if (!vm->ds[i].dev) {
			snprintf(msg, len,
				 "datastore %s is not attached to this host; "
				 "start canopy-agent with --datastore %s=DEV",
				 name, name);
			rc = -EBADFD;
			break;
		}
		rc = agent_ds_slot_get(ag, &vm->ds[i].slot);
		if (rc < 0)
			snprintf(msg, len, "%s",
				 rc == -EOPNOTSUPP ?
					 "this agent has no datastore "
					 "heartbeat slots; start it with "
					 "--ds-slots FIRST-LAST" :
					 "every datastore heartbeat slot of "
					 "this agent is in use; stop a VM or "
					 "give more with --ds-slots");
	}
	if (!rc && any) {
		rc = slots_save(vm);
		if (rc < 0)
			snprintf(msg, len, "cannot record the slots: %s",
				 cn_strerror(rc));
	}
	if (rc < 0)
		agent_vm_ds_release(ag, vm);
	return rc == -EOPNOTSUPP ? -EBADFD : rc;
}

void agent_vm_ds_restore(struct agent *ag, struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 16], *text, *p, name[AGENT_VM_ID_MAX + 1];
	const char *file;
	size_t n;
	unsigned long disk, slot;

	snprintf(path, sizeof(path), "%s/%s", vm->dir, DS_SLOTS_FILE);
	if (sys_read_file(path, 4096, &text, &n) < 0)
		return;
	for (p = text; p && *p;
	     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (sscanf(p, "%lu %lu", &disk, &slot) != 2 ||
		    disk >= vm->spec->n_disks || slot < 1 ||
		    slot > AGENT_DS_SLOTS_MAX)
			continue;
		vm->ds[disk].slot = (uint32_t)slot;
		if (agent_ds_path_split(vm->spec->disks[disk]->path, name,
					sizeof(name), &file) == 1)
			vm->ds[disk].dev = agent_ds_dev(ag, name);
		agent_ds_slot_mark(ag, (uint32_t)slot);
	}
	free(text);
}
