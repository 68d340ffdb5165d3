/* canopy-agent: the VM table, the start-up scan of the run directory and
 * VmStateReport. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

struct agent_vm *agent_vm_find(struct agent *ag, const char *id)
{
	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next)
		if (strcmp(vm->id, id) == 0)
			return vm;
	return NULL;
}

int agent_vm_add(struct agent *ag, const char *id, Canopy__V1__VmSpec *spec,
		 struct agent_vm **out)
{
	struct agent_vm *vm = calloc(1, sizeof(*vm));
	int n;

	if (!vm)
		return -ENOMEM;
	n = snprintf(vm->dir, sizeof(vm->dir), "%s/%s", ag->vms_dir, id);
	if (n < 0 || (size_t)n >= sizeof(vm->dir)) {
		free(vm);
		return -ENAMETOOLONG;
	}
	vm->ag = ag;
	snprintf(vm->id, sizeof(vm->id), "%s", id);
	vm->spec = spec;
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED;
	snprintf(vm->reason, sizeof(vm->reason), "not started");
	vm->pidfd = -1;
	vm->exit_status = -1;
	vm->next = ag->vms;
	ag->vms = vm;
	*out = vm;
	return 0;
}

void agent_vm_free(struct agent *ag, struct agent_vm *vm)
{
	for (struct agent_vm **p = &ag->vms; *p; p = &(*p)->next)
		if (*p == vm) {
			*p = vm->next;
			break;
		}
	if (vm->stats_call) {
		vmmctl_call_cancel(vm->stats_call);
		vm->stats_call = NULL;
		agent_stats_call_done(ag);
	}
	vmmctl_call_cancel(vm->op_call);
	if (vm->op_timer)
		(void)loop_timer_del(ag->loop, vm->op_timer);
	if (vm->pidfd >= 0) {
		loop_fd_del(ag->loop, vm->pidfd, LOOP_READ);
		sys_close(vm->pidfd);
	}
	agent_migrate_forget(ag, vm);
	free(vm->op);
	if (vm->spec)
		canopy__v1__vm_spec__free_unpacked(vm->spec, NULL);
	free(vm);
}

int agent_vm_active(const struct agent_vm *vm)
{
	return vm->pidfd >= 0;
}

void agent_vm_status_apply(struct agent_vm *vm, const Canopy__V1__VmmStatus *st)
{
	vm->rss_bytes = st->rss_bytes;
	vm->uptime_ms = st->uptime_ms;
	vm->n_exits = 0;
	for (size_t i = 0; i < st->n_exits && i < AGENT_EXITS_MAX; i++) {
		struct agent_exit_count *e = &vm->exits[vm->n_exits++];

		snprintf(e->reason, sizeof(e->reason), "%s",
			 st->exits[i]->reason ? st->exits[i]->reason : "");
		e->count = st->exits[i]->count;
	}
	if (st->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING ||
	    st->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED)
		vm->state = st->state;
}

/* CPU time of a process from /proc/PID/stat (utime + stime), in ns. */
static uint64_t proc_cpu_ns(pid_t pid)
{
	char path[64], *buf, *p;
	size_t n;
	unsigned long long ut = 0, st = 0;
	long hz = sysconf(_SC_CLK_TCK);

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (sys_read_file(path, 4096, &buf, &n) < 0)
		return 0;
	/* Fields after the command name, which ends at the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
			 "%llu",
			 &ut, &st) != 2)
		ut = st = 0;
	free(buf);
	if (hz <= 0)
		hz = 100;
	return (ut + st) * (1000000000ull / (unsigned long long)hz);
}

void agent_vm_report_fill(const struct agent_vm *vm,
			  Canopy__V1__VmStateReport *r,
			  Canopy__V1__ExitCount *exits,
			  Canopy__V1__ExitCount **exitp)
{
	canopy__v1__vm_state_report__init(r);
	r->vm_id = (char *)vm->id;
	/* A VM migrating in or out is neither here nor gone yet. */
	r->state = vm->mig ? CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING :
			     vm->state;
	if (vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED)
		r->stop_reason = (char *)vm->reason;
	if (!agent_vm_active(vm))
		return;
	r->pid = (uint32_t)vm->pid;
	r->rss_bytes = vm->rss_bytes;
	r->cpu_ns = proc_cpu_ns(vm->pid);
	r->uptime_ms = vm->uptime_ms;
	for (size_t i = 0; i < vm->n_exits; i++) {
		canopy__v1__exit_count__init(&exits[i]);
		exits[i].reason = (char *)vm->exits[i].reason;
		exits[i].count = vm->exits[i].count;
		exitp[i] = &exits[i];
	}
	r->n_exits = vm->n_exits;
	r->exits = exitp;
}

void agent_vm_report(struct agent *ag, const struct agent_vm *vm)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmStateReport r;
	Canopy__V1__ExitCount exits[AGENT_EXITS_MAX];
	Canopy__V1__ExitCount *exitp[AGENT_EXITS_MAX];
	int rc;

	agent_vm_report_fill(vm, &r, exits, exitp);
	env.body_case = CANOPY__V1__ENVELOPE__BODY_VM_STATE;
	env.vm_state = &r;
	rc = bus_client_send(ag->bus, &env);
	if (rc < 0)
		log_debug("agent", "vm state not sent", "vm=%s err=\"%s\"",
			  vm->id, cn_strerror(rc));
}

/*
 * A directory without spec.pb, vmm.log or control.sock is a CREATE that
 * died half-way (the spec is written last): remove it so that the id can
 * be created again. 1 when removed.
 */
static int incomplete_remove(struct agent *ag, const char *name)
{
	char dir[AGENT_PATH_MAX + 80], path[AGENT_PATH_MAX + 96];
	struct stat sb;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", ag->vms_dir, name);
	snprintf(path, sizeof(path), "%s/vmm.log", dir);
	if (lstat(path, &sb) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/control.sock", dir);
	if (lstat(path, &sb) == 0)
		return 0;
	rc = agent_dir_remove(dir);
	log_warn("agent", "incomplete vm directory removed", "vm=%s err=\"%s\"",
		 name, rc < 0 ? cn_strerror(rc) : "");
	return rc == 0;
}

/* Add the VM of directory vms/<name> if it is one. */
static void scan_one(struct agent *ag, const char *name)
{
	char path[AGENT_PATH_MAX + 64], msg[256];
	Canopy__V1__VmSpec *spec;
	struct agent_vm *vm;
	struct stat sb;
	int rc;

	if (agent_vm_id_check(name, msg, sizeof(msg)) < 0) {
		log_warn("agent", "run directory entry ignored",
			 "entry=%s why=\"%s\"", name, msg);
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", ag->vms_dir, name,
		 AGENT_SPEC_FILE);
	rc = agent_spec_load(path, &spec, msg, sizeof(msg));
	if (rc == -ENOENT && incomplete_remove(ag, name))
		return;
	if (rc < 0) {
		log_warn("agent", "vm directory ignored", "vm=%s why=\"%s\"",
			 name, msg);
		return;
	}
	if (agent_vm_add(ag, name, spec, &vm) < 0) {
		canopy__v1__vm_spec__free_unpacked(spec, NULL);
		log_error("agent", "out of memory loading vm", "vm=%s", name);
		return;
	}
	agent_vm_uid_load(vm);
	if (agent_log_reason(vm->dir, vm->log_mark, vm->reason,
			     sizeof(vm->reason)) < 0)
		snprintf(vm->reason, sizeof(vm->reason), "not started");
	snprintf(path, sizeof(path), "%s/control.sock", vm->dir);
	if (stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		agent_power_adopt(ag, vm);
	else if (agent_migrate_reattach(ag, vm))
		return; /* a receiving VMM (or a leftover, removed) */
	log_info("agent", "vm loaded", "vm=%s adopting=%d", vm->id,
		 vm->op_call != NULL);
}

int agent_vms_scan(struct agent *ag)
{
	DIR *d = opendir(ag->vms_dir);
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		scan_one(ag, de->d_name);
	}
	closedir(d);
	return 0;
}
