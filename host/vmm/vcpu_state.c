/* Save and load the KVM state of vCPUs and of the in-kernel devices. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "host/vmm/snapshot.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"

/* Layout version of a "cpu.N" and of the "kvm" section. */
#define VCPU_STATE_VERSION 1
#define KVM_STATE_VERSION 1
/* Upper bound on the MSRs KVM lists. */
#define VCPU_MAX_MSRS 1024
/* MSRs per KVM_GET_MSRS (KVM refuses more than 256 with E2BIG). */
#define VCPU_MSR_BATCH 256u

struct vcpu_fixed {
	uint32_t version, nmsrs;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
};

struct kvm_fixed {
	uint32_t version, pad;
	struct kvm_irqchip chips[3]; /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* The MSR indices KVM can save, as a kvm_msrs with entries set. */
static struct kvm_msrs *msr_list(struct vm *vm)
{
	struct kvm_msr_list *l;
	struct kvm_msrs *m = NULL;

	l = calloc(1, sizeof(*l) + VCPU_MAX_MSRS * sizeof(uint32_t));
	if (!l)
		return NULL;
	l->nmsrs = VCPU_MAX_MSRS;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0)
		m = calloc(1, sizeof(*m) +
				      l->nmsrs * sizeof(struct kvm_msr_entry));
	if (m) {
		m->nmsrs = l->nmsrs;
		for (uint32_t i = 0; i < l->nmsrs; i++)
			m->entries[i].index = l->indices[i];
	}
	free(l);
	return m;
}

/* Read every MSR KVM can; drop the ones it refuses. Returns the count.
 * KVM_GET_MSRS reads in order and stops at the first MSR it refuses
 * (returning how many it read): read the rest from the one after it, so
 * a save costs one ioctl per refused MSR plus one, not one per MSR (the
 * vCPU save is on the migration switchover's path). */
static uint32_t read_msrs(struct vcpu *c, struct kvm_msrs *m)
{
	uint32_t total = m->nmsrs, kept = 0, i = 0;
	struct kvm_msrs *rest =
		calloc(1, sizeof(*rest) + total * sizeof(rest->entries[0]));

	if (!rest)
		return 0;
	while (i < total) {
		uint32_t want = total - i < VCPU_MSR_BATCH ? total - i :
							     VCPU_MSR_BATCH;
		int n;

		rest->nmsrs = want;
		memcpy(rest->entries, &m->entries[i],
		       want * sizeof(rest->entries[0]));
		n = ioctl(c->fd, KVM_GET_MSRS, rest);
		if (n < 0)
			n = 0;
		memcpy(&m->entries[kept], rest->entries,
		       (uint32_t)n * sizeof(rest->entries[0]));
		kept += (uint32_t)n;
		/* All read, or past the one refused. */
		i += (uint32_t)n == want ? want : (uint32_t)n + 1;
	}
	free(rest);
	m->nmsrs = kept;
	return kept;
}

static int get_fixed(struct vcpu *c, struct vcpu_fixed *f)
{
	if (ioctl(c->fd, KVM_GET_REGS, &f->regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &f->sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_XSAVE, &f->xsave) < 0 ||
	    ioctl(c->fd, KVM_GET_XCRS, &f->xcrs) < 0 ||
	    ioctl(c->fd, KVM_GET_LAPIC, &f->lapic) < 0 ||
	    ioctl(c->fd, KVM_GET_VCPU_EVENTS, &f->events) < 0 ||
	    ioctl(c->fd, KVM_GET_MP_STATE, &f->mp) < 0 ||
	    ioctl(c->fd, KVM_GET_DEBUGREGS, &f->dbg) < 0)
		return -errno;
	return 0;
}

int vcpu_state_save(struct vcpu *c, struct buf *out)
{
	struct vcpu_fixed *f = calloc(1, sizeof(*f));
	struct kvm_msrs *m = msr_list(c->vm);
	int rc = -ENOMEM;

	if (!f || !m)
		goto out;
	f->version = VCPU_STATE_VERSION;
	rc = get_fixed(c, f);
	if (rc < 0)
		goto out;
	f->nmsrs = read_msrs(c, m);
	rc = buf_append(out, f, sizeof(*f));
	if (rc == 0)
		rc = buf_append(out, m->entries,
				f->nmsrs * sizeof(struct kvm_msr_entry));
out:
	free(f);
	free(m);
	return rc;
}

static int set_msrs(struct vcpu *c, const struct kvm_msr_entry *e, uint32_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(*e));
	int set;

	if (!m)
		return -ENOMEM;
	m->nmsrs = n;
	memcpy(m->entries, e, n * sizeof(*e));
	set = ioctl(c->fd, KVM_SET_MSRS, m);
	free(m);
	if (set < 0)
		return -errno;
	if ((uint32_t)set < n) { /* KVM stopped at an MSR it refuses */
		log_error("vmm", "vcpu state: KVM refused an MSR",
			  "cpu=%u msr=0x%x value=0x%llx", c->id, e[set].index,
			  (unsigned long long)e[set].data);
		return -EINVAL;
	}
	return 0;
}

/* Run one KVM_SET_* ioctl; name the one that fails in the log. */
static int set_one(struct vcpu *c, unsigned long req, const void *arg,
		   const char *what)
{
	int err;

	if (ioctl(c->fd, req, arg) == 0)
		return 0;
	err = errno;
	log_error("vmm", "vcpu state: KVM refused a field",
		  "cpu=%u field=%s err=%s", c->id, what, strerror(err));
	return -err;
}

static int load_fixed_early(struct vcpu *c, const struct vcpu_fixed *f)
{
	int rc = set_one(c, KVM_SET_REGS, &f->regs, "regs");

	if (rc == 0)
		rc = set_one(c, KVM_SET_XSAVE, &f->xsave, "xsave");
	/* A host without XSAVE lists no XCRs and refuses KVM_SET_XCRS
	 * outright; an empty list leaves XCR0 at its reset value. */
	if (rc == 0 && f->xcrs.nr_xcrs > 0 &&
	    ioctl(c->fd, KVM_SET_XCRS, &f->xcrs) < 0) {
		rc = -errno;
		log_error("vmm", "vcpu state: KVM refused XCR0",
			  "cpu=%u nr_xcrs=%u xcr0=0x%llx err=%s", c->id,
			  f->xcrs.nr_xcrs,
			  (unsigned long long)f->xcrs.xcrs[0].value,
			  strerror(-rc));
	}
	if (rc == 0)
		rc = set_one(c, KVM_SET_SREGS, &f->sregs, "sregs");
	return rc;
}

static int load_fixed_late(struct vcpu *c, const struct vcpu_fixed *f)
{
	int rc = set_one(c, KVM_SET_MP_STATE, &f->mp, "mp_state");

	if (rc == 0)
		rc = set_one(c, KVM_SET_LAPIC, &f->lapic, "lapic");
	if (rc == 0)
		rc = set_one(c, KVM_SET_VCPU_EVENTS, &f->events, "events");
	if (rc == 0)
		rc = set_one(c, KVM_SET_DEBUGREGS, &f->dbg, "debugregs");
	return rc;
}

int vcpu_state_load(struct vcpu *c, const uint8_t *p, size_t len)
{
	struct vcpu_fixed *f;
	int rc = 0;

	if (len < sizeof(*f))
		return -EINVAL;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	memcpy(f, p, sizeof(*f));
	if (f->version != VCPU_STATE_VERSION || f->nmsrs > VCPU_MAX_MSRS ||
	    len != sizeof(*f) + f->nmsrs * sizeof(struct kvm_msr_entry)) {
		free(f);
		return -EINVAL;
	}
	/* The order QEMU uses: LAPIC after MP state, events late. */
	rc = load_fixed_early(c, f);
	if (rc == 0)
		rc = set_msrs(c, (const struct kvm_msr_entry *)(p + sizeof(*f)),
			      f->nmsrs);
	if (rc == 0)
		rc = load_fixed_late(c, f);
	free(f);
	return rc;
}

int vm_kvm_state_save(struct vm *vm, struct buf *out)
{
	struct kvm_fixed *k = calloc(1, sizeof(*k));
	int rc = 0;

	if (!k)
		return -ENOMEM;
	k->version = KVM_STATE_VERSION;
	for (uint32_t i = 0; i < 3 && rc == 0; i++) {
		k->chips[i].chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &k->chips[i]) < 0)
			rc = -errno;
	}
	if (rc == 0 && (ioctl(vm->vm_fd, KVM_GET_PIT2, &k->pit) < 0 ||
			ioctl(vm->vm_fd, KVM_GET_CLOCK, &k->clock) < 0))
		rc = -errno;
	if (rc == 0)
		rc = buf_append(out, k, sizeof(*k));
	free(k);
	return rc;
}

int vm_kvm_state_load(struct vm *vm, const uint8_t *p, size_t len)
{
	struct kvm_fixed *k;
	int rc = 0;

	if (len != sizeof(*k))
		return -EINVAL;
	k = malloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	memcpy(k, p, sizeof(*k));
	if (k->version != KVM_STATE_VERSION)
		rc = -EINVAL;
	for (uint32_t i = 0; i < 3 && rc == 0; i++)
		if (k->chips[i].chip_id != i ||
		    ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &k->chips[i]) < 0)
			rc = k->chips[i].chip_id != i ? -EINVAL : -errno;
	if (rc == 0) {
		struct kvm_clock_data clk = { .clock = k->clock.clock };

		if (ioctl(vm->vm_fd, KVM_SET_PIT2, &k->pit) < 0 ||
		    ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
			rc = -errno;
	}
	free(k);
	return rc;
}
