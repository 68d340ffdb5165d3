/* KVM set-up of a VM: /dev/kvm checks, VM, irqchip, PIT, guest RAM. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Capabilities canopy-vmm cannot run without. */
static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
};

static int kvm_open(struct vm *vm, char *err, size_t errlen)
{
	int api;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int e = errno;

		snprintf(err, errlen,
			 "/dev/kvm: %s (is KVM enabled and are you allowed to "
			 "use it?)",
			 strerror(e));
		return -e;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm: API version %d, need %d", api,
			 KVM_API_VERSION);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < CN_ARRAY_SIZE(required_caps); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
			  required_caps[i].cap) <= 0) {
			snprintf(err, errlen, "/dev/kvm: missing %s",
				 required_caps[i].name);
			return -ENOTSUP;
		}
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		snprintf(err, errlen, "/dev/kvm: bad vCPU mmap size");
		return -ENOTSUP;
	}
	return 0;
}

static int set_slot(struct vm *vm, uint32_t slot, uint64_t gpa, void *hva,
		    uint64_t size, int logging)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = logging ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	return 0;
}

int vm_mem_set_logging(struct vm *vm, int on)
{
	int rc = set_slot(vm, 0, 0, vm->ram, vm->low_size, on);

	if (rc == 0 && vm->ram_size > vm->low_size)
		rc = set_slot(vm, 1, VMM_HIGH_START, vm->ram + vm->low_size,
			      vm->ram_size - vm->low_size, on);
	if (rc == 0)
		vm->dirty_logging = on;
	return rc;
}

static int mem_create(struct vm *vm, char *err, size_t errlen)
{
	unsigned flags = MFD_CLOEXEC;
	int rc;

	vm->ram_size = vm->cfg.mem_mib << 20;
	vm->low_size = vm->ram_size < VMM_HOLE_START ? vm->ram_size :
						       VMM_HOLE_START;
	if (vm->cfg.hugepages)
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	vm->mem_fd = memfd_create("canopy-guest-ram", flags);
	if (vm->mem_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "guest memory: memfd_create: %s%s",
			 strerror(-rc),
			 vm->cfg.hugepages ? " (are hugepages reserved?)" : "");
		return rc;
	}
	if (ftruncate(vm->mem_fd, (off_t)vm->ram_size) < 0) {
		rc = -errno;
		snprintf(err, errlen, "guest memory: %llu MiB: %s",
			 (unsigned long long)vm->cfg.mem_mib, strerror(-rc));
		return rc;
	}
	/* Huge pages come from a fixed pool: take them now, so a short pool
	 * is a clear error here and not a SIGBUS on the first touch. */
	if (vm->cfg.hugepages &&
	    fallocate(vm->mem_fd, 0, 0, (off_t)vm->ram_size) < 0) {
		rc = -errno;
		snprintf(err, errlen,
			 "guest memory: %llu MiB of 2 MiB huge pages: %s "
			 "(reserve them: /proc/sys/vm/nr_hugepages)",
			 (unsigned long long)vm->cfg.mem_mib, strerror(-rc));
		return rc;
	}
	vm->ram = mmap(NULL, vm->ram_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, vm->mem_fd, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		rc = -errno;
		snprintf(err, errlen, "guest memory: mmap %llu MiB: %s",
			 (unsigned long long)vm->cfg.mem_mib, strerror(-rc));
		return rc;
	}
	madvise(vm->ram, vm->ram_size, MADV_MERGEABLE);
	vm->gmem = (struct gmem){ .ram = vm->ram,
				  .ram_size = vm->ram_size,
				  .low_size = vm->low_size };
	/* Pages written by devices, for dirty.c (one bit per page). */
	vm->gmem.dirty =
		calloc((vm->ram_size / GMEM_PAGE + 63) / 64, sizeof(uint64_t));
	if (!vm->gmem.dirty) {
		snprintf(err, errlen,
			 "guest memory: no memory for the "
			 "device dirty bitmap");
		return -ENOMEM;
	}
	return 0;
}

/* The first KVM_SET_USER_MEMORY_REGION of a VM waits several ms for an
 * SRCU grace period (5-7 ms measured on this machine, whatever the size),
 * idle time that vCPU creation and kernel loading can overlap: the slots
 * are registered by a helper thread, joined before the first vCPU runs. */
static void *mem_register(void *arg)
{
	struct vm *vm = arg;

	vm->mem_register_rc = vm_mem_set_logging(vm, 0);
	return NULL;
}

int vm_mem_wait(struct vm *vm, char *err, size_t errlen)
{
	if (vm->mem_registering) {
		pthread_join(vm->mem_register_thread, NULL);
		vm->mem_registering = 0;
	}
	if (vm->mem_register_rc < 0)
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s",
			 strerror(-vm->mem_register_rc));
	return vm->mem_register_rc;
}

static int mem_register_start(struct vm *vm, char *err, size_t errlen)
{
	int rc = pthread_create(&vm->mem_register_thread, NULL, mem_register,
				vm);

	if (rc == 0) {
		vm->mem_registering = 1;
		return 0;
	}
	/* No thread: do it here. */
	vm->mem_register_rc = vm_mem_set_logging(vm, 0);
	return vm_mem_wait(vm, err, errlen);
}

static int irqchip_create(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0)
		goto fail;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR,
		  &(uint64_t){ VMM_IDMAP_ADDR }) < 0)
		goto fail;
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		goto fail;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "KVM irqchip/PIT set-up: %s", strerror(errno));
	return -errno;
}

int vm_create(struct vm *vm, char *err, size_t errlen)
{
	int rc;

	vm->kvm_fd = vm->vm_fd = vm->mem_fd = vm->event_fd = -1;
	rc = kvm_open(vm, err, errlen);
	if (rc < 0) {
		vm->kvm_unusable = 1;
		return rc;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(-rc));
		return rc;
	}
	rc = irqchip_create(vm, err, errlen);
	if (rc == 0)
		rc = mem_create(vm, err, errlen);
	if (rc == 0)
		rc = mem_register_start(vm, err, errlen);
	return rc;
}

int vm_recreate(struct vm *vm, char *err, size_t errlen)
{
	int rc;

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];

		if (c->run)
			munmap(c->run, (size_t)vm->vcpu_mmap_size);
		sys_close(c->fd);
		memset(c, 0, sizeof(*c));
		c->fd = -1;
	}
	vm->ncpus = 0;
	sys_close(vm->vm_fd);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(-rc));
		return rc;
	}
	rc = irqchip_create(vm, err, errlen);
	if (rc < 0)
		return rc;
	/* Power-on RAM is zero: give the pages back to the host. */
	if (fallocate(vm->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)vm->ram_size) < 0)
		memset(vm->ram, 0, vm->ram_size);
	rc = vm_mem_set_logging(vm, 0);
	if (rc < 0)
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s",
			 strerror(-rc));
	return rc;
}

void vm_destroy(struct vm *vm)
{
	if (vm->mem_registering) {
		pthread_join(vm->mem_register_thread, NULL);
		vm->mem_registering = 0;
	}
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	vm->ram = NULL;
	free((void *)vm->gmem.dirty);
	vm->gmem.dirty = NULL;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, (size_t)vm->vcpu_mmap_size);
		sys_close(vm->vcpus[i].fd);
	}
	vm->ncpus = 0;
	sys_close(vm->mem_fd);
	sys_close(vm->vm_fd);
	sys_close(vm->kvm_fd);
	sys_close(vm->event_fd);
	vm->mem_fd = vm->vm_fd = vm->kvm_fd = vm->event_fd = -1;
}

void *gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	return gmem_ptr(&vm->gmem, gpa, len);
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		log_warn("vmm", "KVM_IRQ_LINE failed", "irq=%u err=%s", irq,
			 strerror(errno));
}
