/* CPUID shown to the guest: KVM's supported set, filtered to what we offer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "host/vmm/vmm.h"

/* Room for KVM_GET_SUPPORTED_CPUID. */
#define CPUID_MAX_ENTRIES 256
/* Our hypervisor leaves: KVM's signature, features, and the timing leaf
 * (TSC and bus frequency in kHz) that VMware defined and guests probe. */
#define CPUID_HV_BASE 0x40000000u
#define CPUID_HV_TIMING 0x40000010u

/* Leaf 1 ECX/EDX bits. */
#define CPUID_1_ECX_VMX (1u << 5)
#define CPUID_1_ECX_SMX (1u << 6)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)
/* Leaf 0x80000001 ECX: SVM. */
#define CPUID_81_ECX_SVM (1u << 2)

static void fix_entry(struct vm *vm, struct vcpu *c, struct kvm_cpuid_entry2 *e)
{
	switch (e->function) {
	case 1:
		/* Initial APIC id, logical processor count, no nested VMX. */
		e->ebx = (e->ebx & 0x0000ffffu) | (c->id << 24) |
			 (vm->cfg.cpus << 16);
		e->ecx &= ~(CPUID_1_ECX_VMX | CPUID_1_ECX_SMX);
		e->ecx |= CPUID_1_ECX_HYPERVISOR;
		if (vm->cfg.cpus > 1)
			e->edx |= CPUID_1_EDX_HTT;
		break;
	case 0xa: /* no virtual PMU: its state does not migrate */
		e->eax = e->ebx = e->ecx = e->edx = 0;
		break;
	case 0xb:
	case 0x1f:
		e->edx = c->id; /* x2APIC id */
		break;
	case CPUID_HV_BASE:
		if (e->eax < CPUID_HV_TIMING)
			e->eax = CPUID_HV_TIMING;
		break;
	case 0x80000001:
		e->ecx &= ~CPUID_81_ECX_SVM;
		break;
	default:
		break;
	}
}

int vcpu_setup_cpuid(struct vm *vm, struct vcpu *c)
{
	struct kvm_cpuid2 *cp;
	size_t sz = sizeof(*cp) + CPUID_MAX_ENTRIES * sizeof(cp->entries[0]);
	int tsc_khz, rc = 0, have_timing = 0;

	cp = calloc(1, sz + sizeof(cp->entries[0]));
	if (!cp)
		return -ENOMEM;
	cp->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cp) < 0) {
		rc = -errno;
		goto out;
	}
	tsc_khz = ioctl(c->fd, KVM_GET_TSC_KHZ, 0);
	if (tsc_khz < 0)
		tsc_khz = 0;
	for (uint32_t i = 0; i < cp->nent; i++) {
		fix_entry(vm, c, &cp->entries[i]);
		if (cp->entries[i].function == CPUID_HV_TIMING)
			have_timing = 1;
	}
	if (!have_timing && tsc_khz > 0) {
		struct kvm_cpuid_entry2 *e = &cp->entries[cp->nent++];

		memset(e, 0, sizeof(*e));
		e->function = CPUID_HV_TIMING;
		e->eax = (uint32_t)tsc_khz;
		e->ebx = 1000000; /* LAPIC bus: 1 GHz in KVM */
	}
	if (ioctl(c->fd, KVM_SET_CPUID2, cp) < 0)
		rc = -errno;
out:
	free(cp);
	return rc;
}
