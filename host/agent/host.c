/* canopy-agent: what it tells the manager about its host: AgentRegister
 * (hostname, CPUs, memory, NICs, CPU flags) and HostStats rounds. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "vmotion/stream.h"

/* Most NICs and CPU flags reported. */
#define HOST_NICS_MAX 64
#define HOST_FLAGS_MAX 256

int agent_bad_log_ok(struct agent *ag)
{
	uint64_t now = sys_mono_ms();

	if (now - ag->bad_window_ms >= 1000) {
		if (ag->bad_dropped)
			log_warn("agent", "bad input lines not logged",
				 "count=%llu",
				 (unsigned long long)ag->bad_dropped);
		ag->bad_window_ms = now;
		ag->bad_logged = 0;
		ag->bad_dropped = 0;
	}
	if (ag->bad_logged < AGENT_BAD_LOG_PER_S) {
		ag->bad_logged++;
		return 1;
	}
	ag->bad_dropped++;
	return 0;
}

/* A "Key: N kB" value of /proc/meminfo, in KiB (0 if absent). */
static uint64_t meminfo_kib(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	unsigned long long v = 0;

	if (p && sscanf(p + strlen(key), ": %llu", &v) != 1)
		v = 0;
	return v;
}

static void host_memory(uint64_t *total_mib, uint64_t *used_mib)
{
	char *t;
	size_t n;
	uint64_t total, avail;

	*total_mib = *used_mib = 0;
	if (sys_read_file("/proc/meminfo", 1 << 16, &t, &n) < 0)
		return;
	total = meminfo_kib(t, "MemTotal");
	avail = meminfo_kib(t, "MemAvailable");
	free(t);
	*total_mib = total >> 10;
	*used_mib = (total > avail ? total - avail : 0) >> 10;
}

/* NIC names from /sys/class/net, loopback left out. */
static size_t host_nics(char names[][64], size_t max)
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "lo"))
			continue;
		snprintf(names[n++], 64, "%.63s", de->d_name);
	}
	closedir(d);
	return n;
}

/* The first "flags" line of /proc/cpuinfo split in place; *buf to free. */
static size_t host_cpu_flags(char **buf, char **flags, size_t max)
{
	char *p, *e, *save = NULL, *tok;
	size_t n = 0, len;

	*buf = NULL;
	if (sys_read_file("/proc/cpuinfo", 4 << 20, buf, &len) < 0)
		return 0;
	p = strstr(*buf, "\nflags");
	if (!p || !(p = strchr(p, ':')))
		return 0;
	e = strchr(p, '\n');
	if (e)
		*e = '\0';
	for (tok = strtok_r(p + 1, " \t", &save); tok && n < max;
	     tok = strtok_r(NULL, " \t", &save))
		flags[n++] = tok;
	return n;
}

/* The CPU feature registers migration admission compares; none when
 * /dev/kvm cannot say (the receiving canopy-vmm still checks). */
static size_t host_cpu_features(uint32_t out[MIG_CPU_FEATS])
{
	struct mig_cpuid *set = calloc(MIG_MAX_CPUID, sizeof(*set));
	unsigned n = 0;
	int rc = set ? mig_kvm_cpuid(-1, set, MIG_MAX_CPUID, &n) : -ENOMEM;

	if (rc == 0)
		mig_cpu_features(set, n, out);
	else
		log_warn("agent", "cannot read the host's CPU features",
			 "err=\"%s\" effect=\"the manager does not compare "
			 "them before a migration; the receiving canopy-vmm "
			 "still does\"",
			 cn_strerror(rc));
	free(set);
	return rc == 0 ? MIG_CPU_FEATS : 0;
}

static void send_register(struct agent *ag)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentRegister r = CANOPY__V1__AGENT_REGISTER__INIT;
	char host[256] = "", nics[HOST_NICS_MAX][64], *nicp[HOST_NICS_MAX];
	char *flags[HOST_FLAGS_MAX], *cpuinfo, *ds[AGENT_DATASTORES_MAX];
	uint32_t feats[MIG_CPU_FEATS];
	char ds_names[AGENT_DATASTORES_MAX][AGENT_VM_ID_MAX + 1];
	uint64_t used;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	(void)gethostname(host, sizeof(host) - 1);
	r.hostname = host;
	r.cpus = cpus > 0 ? (uint32_t)cpus : 1;
	host_memory(&r.memory_mib, &used);
	r.n_nics = host_nics(nics, HOST_NICS_MAX);
	for (size_t i = 0; i < r.n_nics; i++)
		nicp[i] = nics[i];
	r.nics = nicp;
	r.n_cpu_flags = host_cpu_flags(&cpuinfo, flags, HOST_FLAGS_MAX);
	r.cpu_flags = flags;
	r.n_cpu_features = host_cpu_features(feats);
	r.cpu_features = feats;
	/* Names only ("ds1" of "ds1=/dev/sdb"; checked at start-up). */
	for (size_t i = 0; i < ag->opts.n_datastores; i++) {
		const char *d = ag->opts.datastores[i];

		snprintf(ds_names[i], sizeof(ds_names[i]), "%.*s",
			 (int)strcspn(d, "="), d);
		ds[i] = ds_names[i];
	}
	r.datastores = ds;
	r.n_datastores = ag->opts.n_datastores;
	r.version = (char *)AGENT_VERSION;
	r.address = (char *)(ag->opts.address ? ag->opts.address : "");
	env.body_case = CANOPY__V1__ENVELOPE__BODY_REGISTER;
	env.register_ = &r;
	rc = bus_client_send(ag->bus, &env);
	free(cpuinfo);
	if (rc < 0)
		log_warn("agent", "register not sent", "err=\"%s\"",
			 cn_strerror(rc));
	else
		log_info("agent", "registered",
			 "host=%s cpus=%u memory_mib=%llu", ag->opts.host_id,
			 r.cpus, (unsigned long long)r.memory_mib);
}

void agent_host_register(struct agent *ag)
{
	send_register(ag);
	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next)
		agent_vm_report(ag, vm);
	agent_stats_round(ag);
}

static double host_load1(void)
{
	char *t;
	size_t n;
	double v = 0;

	if (sys_read_file("/proc/loadavg", 4096, &t, &n) < 0)
		return 0;
	if (sscanf(t, "%lf", &v) != 1)
		v = 0;
	free(t);
	return v;
}

static void stats_send(struct agent *ag)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__HostStats hs = CANOPY__V1__HOST_STATS__INIT;
	size_t n = 0, i = 0;
	Canopy__V1__VmStateReport *r, **rp;
	Canopy__V1__ExitCount *ex, **exp;
	uint64_t total;
	int rc;

	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next)
		n++;
	r = calloc(n + 1, sizeof(*r));
	rp = calloc(n + 1, sizeof(*rp));
	ex = calloc((n + 1) * AGENT_EXITS_MAX, sizeof(*ex));
	exp = calloc((n + 1) * AGENT_EXITS_MAX, sizeof(*exp));
	if (!r || !rp || !ex || !exp) {
		log_error("agent", "out of memory for host stats");
		goto out;
	}
	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next, i++) {
		agent_vm_report_fill(vm, &r[i], ex + i * AGENT_EXITS_MAX,
				     exp + i * AGENT_EXITS_MAX);
		rp[i] = &r[i];
	}
	host_memory(&total, &hs.memory_used_mib);
	hs.load1 = host_load1();
	hs.vms = rp;
	hs.n_vms = n;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_HOST_STATS;
	env.host_stats = &hs;
	rc = bus_client_send(ag->bus, &env);
	if (rc < 0)
		log_debug("agent", "host stats not sent", "err=\"%s\"",
			  cn_strerror(rc));
out:
	free(r);
	free(rp);
	free(ex);
	free(exp);
}

void agent_stats_call_done(struct agent *ag)
{
	if (!ag->stats_round || !ag->stats_outstanding)
		return;
	if (--ag->stats_outstanding == 0) {
		ag->stats_round = 0;
		stats_send(ag);
	}
}

static void stats_reply(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;

	vm->stats_call = NULL;
	if (status == 0 && vmmctl_code(rep) == 0 && rep->vm_status)
		agent_vm_status_apply(vm, rep->vm_status);
	agent_stats_call_done(vm->ag);
}

void agent_stats_round(struct agent *ag)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;

	if (ag->stats_round)
		return; /* the round in progress will send */
	ag->stats_round = 1;
	ag->stats_outstanding = 1; /* held until every call is out */
	req.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
	req.status = &st;
	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next) {
		/* A VM busy starting or being adopted reports what it has. */
		if (!agent_vm_active(vm) || vm->stats_call || vm->op)
			continue;
		if (vmmctl_call_start(ag->loop, vm->dir, &req,
				      AGENT_STATUS_TIMEOUT_MS, stats_reply, vm,
				      &vm->stats_call) == 0)
			ag->stats_outstanding++;
	}
	agent_stats_call_done(ag);
}
