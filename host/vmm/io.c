/* Port-I/O and MMIO dispatch to devices, and the device registry. */
#include <errno.h>
#include <string.h>

#include "host/vmm/vmm.h"

int io_bus_add(struct io_bus *bus, uint64_t base, uint64_t len,
	       const struct io_ops *ops, void *dev)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	if (bus->n >= VMM_IO_RANGES)
		return -ENOSPC;
	for (unsigned i = 0; i < bus->n; i++) {
		const struct io_range *r = &bus->r[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	bus->r[bus->n++] = (struct io_range){ base, len, ops, dev };
	return 0;
}

int io_bus_access(struct io_bus *bus, uint64_t addr, void *data, uint32_t len,
		  int is_write)
{
	for (unsigned i = 0; i < bus->n; i++) {
		const struct io_range *r = &bus->r[i];

		if (addr < r->base || addr - r->base >= r->len)
			continue;
		if (is_write) {
			if (r->ops->write)
				r->ops->write(r->dev, addr - r->base, data,
					      len);
		} else if (r->ops->read) {
			r->ops->read(r->dev, addr - r->base, data, len);
		} else {
			memset(data, 0xff, len);
		}
		return 0;
	}
	if (!is_write)
		memset(data, 0xff, len);
	return -ENOENT;
}

int vm_dev_register(struct vm *vm, const struct dev_ops *ops, void *dev)
{
	if (vm->ndevs >= VMM_MAX_DEVS)
		return -ENOSPC;
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (strcmp(vm->devs[i].ops->name, ops->name) == 0)
			return -EEXIST;
	vm->devs[vm->ndevs].ops = ops;
	vm->devs[vm->ndevs].dev = dev;
	vm->ndevs++;
	return 0;
}
