/*
 * virtio-balloon for canopy-vmm: the control socket sets a target, the
 * guest inflates (its pages are given back to the host with MADV_REMOVE,
 * so the VMM's resident memory drops) or deflates; the statistics queue
 * tells how much memory the guest really uses, shown by `status`.
 *
 * Threads: balloon_set_target and balloon_info from the I/O thread; the
 * queues run on the device's worker thread.
 */
#ifndef CANOPY_VMM_VIRTIO_BALLOON_H
#define CANOPY_VMM_VIRTIO_BALLOON_H

#include <stddef.h>
#include <stdint.h>

#include "host/vmm/vmm.h"
#include "lib/compiler.h"

struct balloon_info {
	uint32_t target_pages, actual_pages; /* 4 KiB pages */
	uint64_t freed_pages; /* pages returned to the host so far */
	int have_stats; /* the guest has sent statistics */
	uint64_t total_bytes, free_bytes, available_bytes;
	uint64_t age_ms; /* how old those statistics are */
};

/* Add the device (vm->balloon). 0 or -errno with a message in err. */
CN_MUST_CHECK int virtio_balloon_add(struct vm *vm, struct pci *bus, char *err,
				     size_t errlen);
/* Leave target_mib MiB usable by the guest. -ENODEV without a balloon,
 * -EINVAL when the target is outside VMM_MIN_MEM_MIB..memory. */
CN_MUST_CHECK int balloon_set_target(struct vm *vm, uint64_t target_mib,
				     char *err, size_t errlen);
/* Current state and the latest statistics; also asks the guest for fresh
 * ones. -ENODEV without a balloon. */
CN_MUST_CHECK int balloon_info(struct vm *vm, struct balloon_info *out);

#endif
