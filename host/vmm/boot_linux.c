/* Linux x86 boot protocol: load a bzImage and enter its 64-bit entry. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "host/vmm/vmm.h"

/* Offsets in the real-mode header (Documentation/arch/x86/boot.rst). */
#define BZ_SETUP_SECTS 0x1f1
#define BZ_HDR_START 0x1f1
#define BZ_JUMP_END 0x201 /* byte at 0x201: header length past 0x202 */
#define BZ_VERSION 0x206
#define BZ_LOADFLAGS 0x211
#define BZ_TYPE_OF_LOADER 0x210
#define BZ_HEAP_END_PTR 0x224
#define BZ_CMD_LINE_PTR 0x228
#define BZ_RAMDISK_IMAGE 0x218
#define BZ_RAMDISK_SIZE 0x21c
#define BZ_INITRD_ADDR_MAX 0x22c
#define BZ_XLOADFLAGS 0x236
#define BZ_CMDLINE_SIZE 0x238
/* boot_params fields outside the header. */
#define BP_ACPI_RSDP 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define XLF_KERNEL_64 0x1
#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
/* Where the protected-mode kernel goes and its 64-bit entry offset. */
#define BZ_LOAD_ADDR 0x100000ull
#define BZ_ENTRY64_OFF 0x200
/* Boot page tables: PML4, one PDPT, four PDs of 2 MiB pages (4 GiB). */
#define PT_PDPT (VMM_BOOT_PML4 + 0x1000)
#define PT_PD (VMM_BOOT_PML4 + 0x2000)

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void build_page_tables(struct vm *vm)
{
	uint64_t *pml4 = gpa_to_hva(vm, VMM_BOOT_PML4, 0x1000);
	uint64_t *pdpt = gpa_to_hva(vm, PT_PDPT, 0x1000);
	uint64_t *pd = gpa_to_hva(vm, PT_PD, 0x4000);

	memset(pml4, 0, 0x1000);
	memset(pdpt, 0, 0x1000);
	pml4[0] = PT_PDPT | 0x3; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (PT_PD + i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
}

static int check_header(struct vm *vm, const uint8_t *img, size_t len,
			size_t *setup_len, char *err, size_t errlen)
{
	uint16_t version;
	unsigned sects = img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4;

	memcpy(&version, img + BZ_VERSION, 2);
	*setup_len = (size_t)(sects + 1) * 512;
	if (version < 0x20c || !(img[BZ_XLOADFLAGS] & XLF_KERNEL_64)) {
		snprintf(err, errlen,
			 "kernel %s: boot protocol %u.%02u without a 64-bit "
			 "entry point; need 2.12+ (Linux 3.8 or later)",
			 vm->cfg.kernel, version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	if (*setup_len >= len || 0x202 + (size_t)img[BZ_JUMP_END] > len) {
		snprintf(err, errlen, "kernel %s: truncated bzImage",
			 vm->cfg.kernel);
		return -ENOEXEC;
	}
	if (!gpa_to_hva(vm, BZ_LOAD_ADDR, len - *setup_len)) {
		snprintf(err, errlen,
			 "kernel %s: %zu bytes do not fit in %llu MiB",
			 vm->cfg.kernel, len,
			 (unsigned long long)vm->cfg.mem_mib);
		return -ENOEXEC;
	}
	return 0;
}

/* The zero page: the image's header, our additions, the e820 map. */
static int fill_zero_page(struct vm *vm, const uint8_t *img, uint8_t *bp,
			  char *err, size_t errlen)
{
	struct boot_e820 e[BP_E820_MAX];
	uint64_t rd, rdsize;
	int64_t cl, rsdp;
	size_t hlen = 0x202 + img[BZ_JUMP_END] - BZ_HDR_START;
	unsigned n;
	int rc;

	memset(bp, 0, 4096);
	memcpy(bp + BZ_HDR_START, img + BZ_HDR_START, hlen);
	bp[BZ_TYPE_OF_LOADER] = 0xff;
	bp[BZ_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	bp[BZ_HEAP_END_PTR] = 0x00;
	bp[BZ_HEAP_END_PTR + 1] = 0xfe;
	cl = boot_put_cmdline(vm, err, errlen);
	if (cl < 0)
		return (int)cl;
	wr32(bp + BZ_CMD_LINE_PTR, (uint32_t)cl);
	rc = boot_put_initrd(vm, (uint64_t)rd32(img + BZ_INITRD_ADDR_MAX) + 1,
			     &rd, &rdsize, err, errlen);
	if (rc < 0)
		return rc;
	wr32(bp + BZ_RAMDISK_IMAGE, (uint32_t)rd);
	wr32(bp + BZ_RAMDISK_SIZE, (uint32_t)rdsize);
	rsdp = acpi_build(vm);
	if (rsdp < 0) {
		snprintf(err, errlen, "ACPI tables: %s", strerror((int)-rsdp));
		return (int)rsdp;
	}
	memcpy(bp + BP_ACPI_RSDP, &rsdp, 8);
	n = boot_e820(vm, e, BP_E820_MAX);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e, n * sizeof(e[0]));
	return 0;
}

int boot_linux_load(struct vm *vm, const uint8_t *img, size_t len, char *err,
		    size_t errlen)
{
	uint8_t *bp = gpa_to_hva(vm, VMM_BOOT_INFO, 4096);
	size_t setup_len;
	int rc = check_header(vm, img, len, &setup_len, err, errlen);

	if (rc < 0)
		return rc;
	memcpy(gpa_to_hva(vm, BZ_LOAD_ADDR, len - setup_len), img + setup_len,
	       len - setup_len);
	rc = fill_zero_page(vm, img, bp, err, errlen);
	if (rc < 0)
		return rc;
	build_page_tables(vm);
	vm->boot_kind = VMM_BOOT_LINUX;
	vm->entry = BZ_LOAD_ADDR + BZ_ENTRY64_OFF;
	rc = boot_set_regs64(vm, vm->entry, VMM_BOOT_INFO, VMM_BOOT_PML4);
	if (rc < 0)
		snprintf(err, errlen, "setting boot registers: %s",
			 strerror(-rc));
	return rc;
}
