/*
 * virtio-rng for canopy-vmm (`--rng on`): an entropy source for the guest.
 * Every device-writable buffer the driver offers is filled from the host's
 * getrandom(), at most VIRTIO_RNG_MAX_REQ bytes per request; a request
 * with a device-readable buffer breaks the rules (5.4.6.1) and the device
 * then needs a reset.
 *
 * Threads: virtio_rng_add at set-up; the queue runs on the device's worker
 * thread (virtio_pci.h).
 */
#ifndef CANOPY_VMM_VIRTIO_RNG_H
#define CANOPY_VMM_VIRTIO_RNG_H

#include <stddef.h>

#include "host/vmm/virtq.h"
#include "lib/compiler.h"

struct vm;
struct pci;

/* Most bytes one request gets; a longer buffer is filled this far. */
#define VIRTIO_RNG_MAX_REQ (64u << 10)

/*
 * Serve at most max requests of queue q, using *req as scratch: fill each
 * one's writable part and complete it (the used length says how many bytes
 * were filled; 0 if getrandom failed). Pure apart from getrandom, so unit
 * tests drive it over a fake guest memory. Returns the requests completed
 * (0..max), or -EINVAL when the driver gave a bad chain or a readable
 * buffer (nothing more is taken from q: the device must need a reset).
 */
CN_MUST_CHECK int virtio_rng_serve(struct virtq *q, struct virtq_req *req,
				   unsigned max);

/* Add a virtio-rng device to the VM's PCI bus. 0 or -errno with a message
 * in err. */
CN_MUST_CHECK int virtio_rng_add(struct vm *vm, struct pci *bus, char *err,
				 size_t errlen);

#endif
