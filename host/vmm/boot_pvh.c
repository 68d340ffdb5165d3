/* PVH boot: load an ELF kernel, find its Xen PHYS32 entry note, start info. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "host/vmm/vmm.h"

/* Xen ELF note giving the 32-bit PVH entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_START_MAGIC 0x336ec578u
/* Lowest address a PVH image may load at: below is ours. */
#define PVH_MIN_LOAD 0x100000ull
/* Our memory map entries and module list fit in their pages. */
#define PVH_MAX_MEMMAP 8

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

/* A view of the image's program headers, normalised from ELF32 or ELF64. */
struct phdr {
	uint32_t type;
	uint64_t off, paddr, filesz, memsz;
};

static int get_phdr(const uint8_t *img, size_t len, int is64, unsigned i,
		    struct phdr *ph)
{
	if (is64) {
		const Elf64_Ehdr *eh = (const void *)img;
		Elf64_Phdr p;
		uint64_t at = eh->e_phoff + (uint64_t)i * sizeof(p);

		if (eh->e_phentsize != sizeof(p) || at > len ||
		    len - at < sizeof(p))
			return -ENOEXEC;
		memcpy(&p, img + at, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_paddr,
				     p.p_filesz, p.p_memsz };
	} else {
		const Elf32_Ehdr *eh = (const void *)img;
		Elf32_Phdr p;
		uint64_t at = eh->e_phoff + (uint64_t)i * sizeof(p);

		if (eh->e_phentsize != sizeof(p) || at > len ||
		    len - at < sizeof(p))
			return -ENOEXEC;
		memcpy(&p, img + at, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_paddr,
				     p.p_filesz, p.p_memsz };
	}
	if (ph->off > len || ph->filesz > len - ph->off)
		return -ENOEXEC;
	return 0;
}

/* Scan a PT_NOTE segment for the PHYS32 entry. 1 if found. */
static int find_entry_note(const uint8_t *p, uint64_t n, uint64_t *entry)
{
	uint64_t at = 0;

	while (n - at >= 12) {
		uint32_t namesz, descsz, type;
		uint64_t name_at = at + 12, desc_at, next;

		memcpy(&namesz, p + at, 4);
		memcpy(&descsz, p + at + 4, 4);
		memcpy(&type, p + at + 8, 4);
		desc_at = name_at + (((uint64_t)namesz + 3) & ~3ull);
		next = desc_at + (((uint64_t)descsz + 3) & ~3ull);
		if (next > n)
			return 0;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(p + name_at, "Xen", 4) == 0 &&
		    (descsz == 4 || descsz == 8)) {
			uint64_t v = 0;

			memcpy(&v, p + desc_at, descsz);
			*entry = v;
			return 1;
		}
		at = next;
	}
	return 0;
}

static int check_ehdr(const uint8_t *img, size_t len, int *is64,
		      unsigned *phnum)
{
	if (len < sizeof(Elf32_Ehdr) || img[EI_DATA] != ELFDATA2LSB)
		return -ENOEXEC;
	*is64 = img[EI_CLASS] == ELFCLASS64;
	if (*is64) {
		const Elf64_Ehdr *eh = (const void *)img;

		if (len < sizeof(*eh) || eh->e_machine != EM_X86_64)
			return -ENOEXEC;
		*phnum = eh->e_phnum;
	} else {
		const Elf32_Ehdr *eh = (const void *)img;

		if (img[EI_CLASS] != ELFCLASS32 || eh->e_machine != EM_386)
			return -ENOEXEC;
		*phnum = eh->e_phnum;
	}
	return *phnum ? 0 : -ENOEXEC;
}

/* Copy one PT_LOAD into guest RAM after checking where it goes. */
static int load_segment(struct vm *vm, const uint8_t *img,
			const struct phdr *ph, char *err, size_t errlen)
{
	uint8_t *dst;

	if (ph->filesz > ph->memsz || ph->paddr < PVH_MIN_LOAD) {
		snprintf(err, errlen,
			 "kernel %s: bad segment at 0x%llx (below 1 MiB or "
			 "file size above memory size)",
			 vm->cfg.kernel, (unsigned long long)ph->paddr);
		return -ENOEXEC;
	}
	dst = gpa_to_hva(vm, ph->paddr, ph->memsz);
	if (!dst) {
		snprintf(err, errlen,
			 "kernel %s: segment 0x%llx+0x%llx does not fit in "
			 "%llu MiB of guest memory",
			 vm->cfg.kernel, (unsigned long long)ph->paddr,
			 (unsigned long long)ph->memsz,
			 (unsigned long long)vm->cfg.mem_mib);
		return -ENOEXEC;
	}
	memcpy(dst, img + ph->off, ph->filesz);
	memset(dst + ph->filesz, 0, ph->memsz - ph->filesz);
	return 0;
}

static int write_start_info(struct vm *vm, char *err, size_t errlen)
{
	struct hvm_start_info *si = gpa_to_hva(vm, VMM_BOOT_INFO, 4096);
	struct hvm_memmap_entry *mm = gpa_to_hva(vm, VMM_BOOT_MEMMAP, 4096);
	struct hvm_modlist_entry *mod = (void *)(si + 1);
	struct boot_e820 e[PVH_MAX_MEMMAP];
	uint64_t rd, rdsize;
	int64_t cl, rsdp;
	unsigned n = boot_e820(vm, e, PVH_MAX_MEMMAP);
	int rc;

	cl = boot_put_cmdline(vm, err, errlen);
	if (cl < 0)
		return (int)cl;
	rc = boot_put_initrd(vm, VMM_HOLE_START, &rd, &rdsize, err, errlen);
	if (rc < 0)
		return rc;
	rsdp = acpi_build(vm);
	if (rsdp < 0) {
		snprintf(err, errlen, "ACPI tables: %s", strerror((int)-rsdp));
		return (int)rsdp;
	}
	memset(si, 0, sizeof(*si) + sizeof(*mod));
	si->magic = PVH_START_MAGIC;
	si->version = 1;
	si->cmdline_paddr = (uint64_t)cl;
	si->rsdp_paddr = (uint64_t)rsdp;
	si->memmap_paddr = VMM_BOOT_MEMMAP;
	si->memmap_entries = n;
	for (unsigned i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_entry){ e[i].addr, e[i].size,
						   e[i].type, 0 };
	if (rdsize) {
		si->nr_modules = 1;
		si->modlist_paddr = VMM_BOOT_INFO + sizeof(*si);
		*mod = (struct hvm_modlist_entry){ rd, rdsize, 0, 0 };
	}
	return 0;
}

int boot_pvh_load(struct vm *vm, const uint8_t *img, size_t len, char *err,
		  size_t errlen)
{
	uint64_t entry = 0;
	unsigned phnum;
	int is64, found = 0, loaded = 0, rc;

	if (check_ehdr(img, len, &is64, &phnum) < 0) {
		snprintf(err, errlen,
			 "kernel %s: not an x86 ELF executable we can boot",
			 vm->cfg.kernel);
		return -ENOEXEC;
	}
	for (unsigned i = 0; i < phnum; i++) {
		struct phdr ph;

		if (get_phdr(img, len, is64, i, &ph) < 0) {
			snprintf(err, errlen,
				 "kernel %s: program header %u is truncated or "
				 "points outside the file",
				 vm->cfg.kernel, i);
			return -ENOEXEC;
		}
		if (ph.type == PT_NOTE && !found)
			found = find_entry_note(img + ph.off, ph.filesz,
						&entry);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		rc = load_segment(vm, img, &ph, err, errlen);
		if (rc < 0)
			return rc;
		loaded++;
	}
	if (!found || !loaded) {
		snprintf(err, errlen,
			 "kernel %s: ELF without a PVH entry note "
			 "(XEN_ELFNOTE_PHYS32_ENTRY) or without loadable "
			 "segments",
			 vm->cfg.kernel);
		return -ENOEXEC;
	}
	rc = write_start_info(vm, err, errlen);
	if (rc < 0)
		return rc;
	vm->boot_kind = VMM_BOOT_PVH;
	vm->entry = entry;
	rc = boot_set_regs32(vm, entry, VMM_BOOT_INFO, 0);
	if (rc < 0)
		snprintf(err, errlen, "setting boot registers: %s",
			 strerror(-rc));
	return rc;
}
