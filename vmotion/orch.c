/* vMotion orchestration, pure: admission checks, the task's stage machine
 * and how its progress reads. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmotion/orch.h"
#include "vmotion/stream.h"

static int has(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] && strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* The VM's own checks. */
static enum cn_code admit_vm(const struct vmo_admit *a, char *why, size_t n)
{
	if (a->max_downtime_ms > VMO_MAX_DOWNTIME_MS_MAX) {
		snprintf(why, n,
			 "max downtime %u ms is out of range: give 1..%u ms, "
			 "or 0 for the default (100)",
			 a->max_downtime_ms, VMO_MAX_DOWNTIME_MS_MAX);
		return CN_INVALID_ARGUMENT;
	}
	if (!a->dst_valid_name) {
		snprintf(why, n,
			 "'%.64s' is not a host id; list hosts with 'canopy "
			 "host list'",
			 a->dst ? a->dst : "");
		return CN_INVALID_ARGUMENT;
	}
	if (!a->vm_running) {
		snprintf(why, n,
			 "vm %s is not running; only a running vm migrates "
			 "live (start it with 'canopy vm start %s', or move "
			 "a stopped vm by recreating it)",
			 a->vm, a->vm);
		return CN_FAILED_PRECONDITION;
	}
	if (a->vm_busy) {
		snprintf(why, n,
			 "vm %s has another task running; wait for it ('canopy "
			 "task list --active') and retry",
			 a->vm);
		return CN_FAILED_PRECONDITION;
	}
	if (strcmp(a->src, a->dst) == 0) {
		snprintf(why, n,
			 "vm %s already runs on host %s; pick another "
			 "destination",
			 a->vm, a->dst);
		return CN_INVALID_ARGUMENT;
	}
	return CN_OK;
}

static enum cn_code admit_hosts(const struct vmo_admit *a, char *why, size_t n)
{
	if (!a->dst_known) {
		snprintf(why, n,
			 "host %s is not known; list hosts with 'canopy host "
			 "list'",
			 a->dst);
		return CN_NOT_FOUND;
	}
	if (!a->dst_connected) {
		snprintf(why, n,
			 "host %s is disconnected; start its canopy-agent or "
			 "pick another host",
			 a->dst);
		return CN_UNAVAILABLE;
	}
	if (a->dst_maintenance) {
		snprintf(why, n,
			 "host %s is in maintenance mode; run 'canopy host "
			 "exit-maintenance %s' or pick another host",
			 a->dst, a->dst);
		return CN_FAILED_PRECONDITION;
	}
	if (!a->src_connected) {
		snprintf(why, n,
			 "host %s, where vm %s runs, is disconnected; wait for "
			 "it to reconnect",
			 a->src, a->vm);
		return CN_UNAVAILABLE;
	}
	return CN_OK;
}

static enum cn_code admit_fit(const struct vmo_admit *a, char *why, size_t n)
{
	unsigned limit = a->host_limit ? a->host_limit : VMO_HOST_LIMIT_DEFAULT;
	char bits[64];

	if (a->n_local_disks) {
		snprintf(why, n,
			 "vm %s has %d disk(s) that are not on a datastore; "
			 "live migration moves only vms whose disks are on a "
			 "shared datastore",
			 a->vm, a->n_local_disks);
		return CN_FAILED_PRECONDITION;
	}
	for (size_t i = 0; i < a->n_datastores; i++)
		if (!has(a->dst_datastores, a->n_dst_datastores,
			 a->datastores[i])) {
			snprintf(why, n,
				 "host %s does not see datastore %s of vm %s; "
				 "attach it there (canopy-agent --datastore "
				 "%s=DEV) or pick another host",
				 a->dst, a->datastores[i], a->vm,
				 a->datastores[i]);
			return CN_FAILED_PRECONDITION;
		}
	if (a->n_src_cpu == MIG_CPU_FEATS && a->n_dst_cpu == MIG_CPU_FEATS &&
	    mig_cpu_features_missing(a->src_cpu, a->dst_cpu, bits,
				     sizeof(bits))) {
		snprintf(why, n,
			 "host %s's CPU lacks features vm %s may use on host "
			 "%s (%s); pick another host, or power the vm off and "
			 "start it on %s",
			 a->dst, a->vm, a->src, bits, a->dst);
		return CN_FAILED_PRECONDITION;
	}
	if (a->dst_free_mib < a->vm_memory_mib) {
		snprintf(why, n,
			 "host %s has %llu MiB free, vm %s needs %llu MiB; "
			 "free memory there or pick another host",
			 a->dst, (unsigned long long)a->dst_free_mib, a->vm,
			 (unsigned long long)a->vm_memory_mib);
		return CN_RESOURCE_EXHAUSTED;
	}
	if (a->src_active >= limit || a->dst_active >= limit) {
		snprintf(why, n,
			 "host %s already runs %u migrations (limit %u); "
			 "retry when one has finished",
			 a->src_active >= limit ? a->src : a->dst,
			 a->src_active >= limit ? a->src_active : a->dst_active,
			 limit);
		return CN_RESOURCE_EXHAUSTED;
	}
	return CN_OK;
}

enum cn_code vmo_admit_check(const struct vmo_admit *a, char *why, size_t n)
{
	enum cn_code c = admit_vm(a, why, n);

	if (c == CN_OK)
		c = admit_hosts(a, why, n);
	if (c == CN_OK)
		c = admit_fit(a, why, n);
	if (c == CN_OK && n)
		why[0] = '\0';
	return c;
}

int vmo_stage_next(enum vmo_stage stage, enum vmo_event ev,
		   enum vmo_stage *next)
{
	/* -1: the event cannot happen in that stage. */
	static const signed char t[VMO_STAGE_COUNT][VMO_EV_COUNT] = {
		[VMO_QUEUED] = { VMO_PREPARING, -1, -1, -1, VMO_FAILED,
				 VMO_CANCELLED },
		[VMO_PREPARING] = { -1, VMO_SENDING, -1, -1, VMO_FAILED,
				    VMO_CANCELLED },
		[VMO_SENDING] = { -1, -1, VMO_COMMITTING, -1, VMO_FAILED,
				  VMO_CANCELLED },
		[VMO_COMMITTING] = { -1, -1, -1, VMO_DONE, -1, -1 },
		[VMO_DONE] = { -1, -1, -1, -1, -1, -1 },
		[VMO_FAILED] = { -1, -1, -1, -1, -1, -1 },
		[VMO_CANCELLED] = { -1, -1, -1, -1, -1, -1 },
	};

	if ((unsigned)stage >= VMO_STAGE_COUNT ||
	    (unsigned)ev >= VMO_EV_COUNT || t[stage][ev] < 0)
		return -EINVAL;
	*next = (enum vmo_stage)t[stage][ev];
	return 0;
}

int vmo_cancel_ok(enum vmo_stage stage, const char *phase)
{
	static const char *const early[] = { "connecting", "header",
					     "precopy" };

	if (stage == VMO_QUEUED || stage == VMO_PREPARING)
		return 1;
	if (stage != VMO_SENDING)
		return 0;
	return !phase || !*phase || has(early, 3, phase);
}

const char *vmo_stage_name(enum vmo_stage stage)
{
	static const char *const names[VMO_STAGE_COUNT] = {
		[VMO_QUEUED] = "queued",       [VMO_PREPARING] = "preparing",
		[VMO_SENDING] = "sending",     [VMO_COMMITTING] = "committing",
		[VMO_DONE] = "done",	       [VMO_FAILED] = "failed",
		[VMO_CANCELLED] = "cancelled",
	};

	return (unsigned)stage < VMO_STAGE_COUNT ? names[stage] : "?";
}

uint32_t vmo_progress_pct(const struct vmo_progress *p, uint64_t memory_mib)
{
	const char *ph = p->phase ? p->phase : "";
	uint64_t r1;

	if (strcmp(ph, "stop-and-copy") == 0)
		return 92;
	if (strcmp(ph, "commit") == 0 || strcmp(ph, "completed") == 0)
		return 95;
	if (strcmp(ph, "precopy") != 0)
		return 10;
	if (p->round <= 1) {
		r1 = memory_mib ? p->transferred_mib * 70 / memory_mib : 0;
		return 10 + (uint32_t)(r1 > 70 ? 70 : r1);
	}
	return 80 + (p->round - 1 > 10 ? 10 : p->round - 1);
}

void vmo_progress_text(const struct vmo_progress *p, char *buf, size_t n)
{
	const char *ph = p->phase && *p->phase ? p->phase : "connecting";
	int k;

	if (!n)
		return;
	if (strcmp(ph, "precopy") != 0) {
		snprintf(buf, n, "%s", ph);
		return;
	}
	k = snprintf(buf, n,
		     "precopy round %u: %llu MiB remaining, dirty %llu MiB/s, "
		     "expected downtime %llu ms",
		     p->round, (unsigned long long)p->remaining_mib,
		     (unsigned long long)p->dirty_rate_mib_s,
		     (unsigned long long)p->expected_downtime_ms);
	if (p->throttle_pct && k > 0 && (size_t)k < n)
		snprintf(buf + k, n - (size_t)k, ", vCPU throttle %u%%",
			 p->throttle_pct);
}
