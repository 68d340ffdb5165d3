/* The host's KVM_GET_SUPPORTED_CPUID as vMotion CPUID leaves: what the
 * receiver compares a stream's HEADER with, and what an agent reports. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmotion/stream.h"

int mig_kvm_cpuid(int kvm_fd, struct mig_cpuid *set, unsigned max, unsigned *n)
{
	struct kvm_cpuid2 *cp;
	int fd = kvm_fd, rc = 0;

	*n = 0;
	if (max > MIG_MAX_CPUID)
		max = MIG_MAX_CPUID;
	if (fd < 0 && (fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	cp = calloc(1, sizeof(*cp) + max * sizeof(cp->entries[0]));
	if (!cp) {
		rc = -ENOMEM;
		goto out;
	}
	cp->nent = max;
	if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, cp) < 0) {
		rc = -errno;
		goto out;
	}
	for (uint32_t i = 0; i < cp->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &cp->entries[i];

		set[i] = (struct mig_cpuid){ .function = e->function,
					     .index = e->index,
					     .eax = e->eax,
					     .ebx = e->ebx,
					     .ecx = e->ecx,
					     .edx = e->edx };
	}
	*n = cp->nent;
out:
	free(cp);
	if (kvm_fd < 0)
		close(fd);
	return rc;
}
