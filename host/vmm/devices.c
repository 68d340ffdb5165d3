/* The VM's PCI bus and the virtio devices its options ask for. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "host/vmm/pci.h"
#include "host/vmm/virtio_balloon.h"
#include "host/vmm/virtio_blk.h"
#include "host/vmm/virtio_net.h"
#include "host/vmm/virtio_pci.h"
#include "host/vmm/virtio_rng.h"
#include "host/vmm/vmm.h"

static int add_disk(struct vm *vm, const char *opt, char *err, size_t errlen)
{
	struct blk_spec spec;
	struct blk_backend *b;
	int rc = blk_spec_parse(opt, &spec, err, errlen);

	spec.ds_name = vm->cfg.name;
	spec.defer_lock = vm->cfg.incoming != NULL;
	if (rc == 0)
		rc = spec.ds_dev ? blk_ds_open(&spec, &b, err, errlen) :
				   blk_file_open(&spec, &b, err, errlen);
	if (rc == 0)
		rc = virtio_blk_add(vm, vm->pci, b, spec.serial, err, errlen);
	return rc;
}

/* NIC index of the VM: a backend from its --net option, a MAC from the
 * option or derived from the VM's name and the index. */
static int add_nic(struct vm *vm, unsigned index, char *err, size_t errlen)
{
	struct net_spec spec;
	struct net_backend *b;
	uint8_t mac[NET_MAC_LEN];
	int rc = net_spec_parse(vm->cfg.net[index], &spec, err, errlen);

	if (rc == 0)
		rc = net_backend_open(&spec, &b, err, errlen);
	if (rc < 0)
		return rc;
	if (spec.has_mac)
		memcpy(mac, spec.mac, sizeof(mac));
	else
		net_mac_default(vm->cfg.name, index, mac);
	return virtio_net_add(vm, vm->pci, b, mac, err, errlen);
}

int devices_create(struct vm *vm, char *err, size_t errlen)
{
	int rc;

	if (vm->cfg.ndisks > VMM_MAX_DISKS) {
		snprintf(err, errlen, "at most %d disks", VMM_MAX_DISKS);
		return -EINVAL;
	}
	rc = pci_create(vm, &vm->pci);
	if (rc < 0) {
		snprintf(err, errlen, "pci: %s", strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < vm->cfg.ndisks; i++) {
		rc = add_disk(vm, vm->cfg.disk[i], err, errlen);
		if (rc < 0)
			return rc;
	}
	for (unsigned i = 0; i < vm->cfg.nnets && i < VMM_MAX_NICS; i++) {
		rc = add_nic(vm, i, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (vm->cfg.rng) {
		rc = virtio_rng_add(vm, vm->pci, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (vm->cfg.balloon)
		return virtio_balloon_add(vm, vm->pci, err, errlen);
	return 0;
}

void devices_destroy(struct vm *vm)
{
	while (vm->nvirtio)
		virtio_pci_destroy(vm->virtio[--vm->nvirtio]);
	pci_destroy(vm->pci);
	vm->pci = NULL;
}
