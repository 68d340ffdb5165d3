/* Boot common to both kernel formats: reading the image, e820, entry regs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "host/vmm/jail.h"
#include "host/vmm/pci.h"
#include "host/vmm/vmm.h"
#include "lib/sys.h"

/* Largest kernel image and initrd we read. */
#define BOOT_KERNEL_MAX (256u << 20)
/* Flat GDT for the entry state: null, null, code32/64, data. */
#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18
#define BOOT_LOW_RAM_END 0x9fc00ull /* conventional memory below the EBDA */
#define BOOT_HIGH_MEM 0x100000ull

int boot_probe(const uint8_t *img, size_t len)
{
	if (len >= 64 && memcmp(img, "\177ELF", 4) == 0)
		return VMM_BOOT_PVH;
	if (len >= 0x250 && memcmp(img + 0x202, "HdrS", 4) == 0)
		return VMM_BOOT_LINUX;
	return 0;
}

unsigned boot_e820(struct vm *vm, struct boot_e820 *out, unsigned max)
{
	unsigned n = 0;

	if (max < 5)
		return 0;
	out[n++] = (struct boot_e820){ 0, BOOT_LOW_RAM_END, E820_RAM };
	out[n++] = (struct boot_e820){ BOOT_LOW_RAM_END,
				       BOOT_HIGH_MEM - BOOT_LOW_RAM_END,
				       E820_RESERVED };
	out[n++] = (struct boot_e820){ BOOT_HIGH_MEM,
				       vm->low_size - BOOT_HIGH_MEM, E820_RAM };
	/* PCI ECAM: reserved, so guests trust the MCFG table. */
	out[n++] = (struct boot_e820){ PCI_ECAM_BASE, PCI_ECAM_SIZE,
				       E820_RESERVED };
	if (vm->ram_size > vm->low_size)
		out[n++] = (struct boot_e820){ VMM_HIGH_START,
					       vm->ram_size - vm->low_size,
					       E820_RAM };
	return n;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

/* GDT entries matching the segments set in sregs (for guests that reload
 * their segment registers before installing their own GDT). */
static void write_gdt(struct vm *vm, int long_mode)
{
	uint64_t *gdt = gpa_to_hva(vm, VMM_BOOT_GDT, 4 * sizeof(uint64_t));

	gdt[0] = gdt[1] = 0;
	gdt[2] = long_mode ? 0x00af9b000000ffffull : 0x00cf9b000000ffffull;
	gdt[3] = 0x00cf93000000ffffull;
}

/* Boot vCPU registers: protected mode (32-bit flat, paging off) or long
 * mode (cr3 given, 64-bit code). */
static int set_regs(struct vm *vm, uint64_t entry, uint64_t ebx, uint64_t esi,
		    uint64_t cr3)
{
	struct vcpu *c = &vm->vcpus[0];
	struct kvm_sregs s;
	struct kvm_regs r = {
		.rflags = 0x2, .rip = entry, .rbx = ebx, .rsi = esi
	};

	if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	write_gdt(vm, cr3 != 0);
	seg(&s.cs, BOOT_SEL_CODE, 0xb, cr3 != 0);
	seg(&s.ds, BOOT_SEL_DATA, 0x3, 0);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.gdt.base = VMM_BOOT_GDT;
	s.gdt.limit = 4 * 8 - 1;
	s.cr0 = 0x11; /* PE | ET */
	s.cr4 = 0;
	s.efer = 0;
	if (cr3) {
		s.cr3 = cr3;
		s.cr4 = 0x20; /* PAE */
		s.cr0 |= 0x80000000u; /* PG */
		s.efer = 0x500; /* LME | LMA */
	}
	if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0 ||
	    ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

int boot_set_regs32(struct vm *vm, uint64_t entry, uint64_t ebx, uint64_t esi)
{
	return set_regs(vm, entry, ebx, esi, 0);
}

int boot_set_regs64(struct vm *vm, uint64_t entry, uint64_t rsi, uint64_t cr3)
{
	return set_regs(vm, entry, 0, rsi, cr3);
}

/* Read a whole file (kernel, initrd) with a clear error. */
int boot_read_file(const char *what, const char *path, uint8_t **out,
		   size_t *len, char *err, size_t errlen)
{
	return boot_read_image(what, path, -1, out, len, err, errlen);
}

int boot_read_image(const char *what, const char *path, int fd, uint8_t **out,
		    size_t *len, char *err, size_t errlen)
{
	char *p = NULL;
	size_t n = 0;
	int rc = fd >= 0 ? vmm_jail_read_fd(fd, BOOT_KERNEL_MAX, &p, &n) :
			   sys_read_file(path, BOOT_KERNEL_MAX, &p, &n);

	if (rc == -EFBIG || rc == -EMSGSIZE) {
		snprintf(err, errlen, "%s %s: larger than %u MiB", what, path,
			 BOOT_KERNEL_MAX >> 20);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(-rc));
		return rc;
	}
	*out = (uint8_t *)p;
	*len = n;
	return 0;
}

int boot_load(struct vm *vm, char *err, size_t errlen)
{
	uint8_t *img;
	size_t len;
	int rc = boot_read_image("kernel", vm->cfg.kernel,
				 vm->files_kept ? vm->kernel_fd : -1, &img,
				 &len, err, errlen);

	if (rc < 0)
		return rc;
	switch (boot_probe(img, len)) {
	case VMM_BOOT_PVH:
		rc = boot_pvh_load(vm, img, len, err, errlen);
		break;
	case VMM_BOOT_LINUX:
		rc = boot_linux_load(vm, img, len, err, errlen);
		break;
	default:
		snprintf(err, errlen,
			 "kernel %s: neither an ELF (PVH) kernel nor a Linux "
			 "bzImage (%zu bytes)",
			 vm->cfg.kernel, len);
		rc = -ENOEXEC;
	}
	free(img);
	return rc;
}

/* Copy the command line below 1 MiB; returns its GPA or -errno. */
int64_t boot_put_cmdline(struct vm *vm, char *err, size_t errlen)
{
	const char *cl = vm->cfg.cmdline ? vm->cfg.cmdline : "";
	size_t n = strlen(cl);
	char *dst = gpa_to_hva(vm, VMM_BOOT_CMDLINE, VMM_BOOT_CMDLINE_MAX);

	if (n >= VMM_BOOT_CMDLINE_MAX) {
		snprintf(err, errlen,
			 "command line is %zu bytes; the limit is %u", n,
			 VMM_BOOT_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	memcpy(dst, cl, n + 1);
	return (int64_t)VMM_BOOT_CMDLINE;
}

/* Place the initrd at the top of low RAM (below max_addr), 4 KiB aligned.
 * Returns 0 with *gpa and *size (0/0 without initrd) or -errno. */
int boot_put_initrd(struct vm *vm, uint64_t max_addr, uint64_t *gpa,
		    uint64_t *size, char *err, size_t errlen)
{
	uint8_t *img;
	size_t len;
	uint64_t top = vm->low_size < max_addr ? vm->low_size : max_addr;
	int rc;

	*gpa = *size = 0;
	if (!vm->cfg.initrd)
		return 0;
	rc = boot_read_image("initrd", vm->cfg.initrd,
			     vm->files_kept ? vm->initrd_fd : -1, &img, &len,
			     err, errlen);
	if (rc < 0)
		return rc;
	if (len + (16u << 20) > top) {
		snprintf(err, errlen,
			 "initrd %s (%zu MiB) does not fit in guest memory; "
			 "give the VM more memory",
			 vm->cfg.initrd, len >> 20);
		free(img);
		return -ENOMEM;
	}
	*gpa = (top - len) & ~0xfffull;
	*size = len;
	memcpy(gpa_to_hva(vm, *gpa, len), img, len);
	free(img);
	return 0;
}
