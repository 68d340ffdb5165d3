/* Unit tests for canopy-vmm's guest-memory checks, kernel loaders and ACPI
 * tables against a fake guest RAM buffer (no KVM needed). */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/vmm/pci.h"
#include "host/vmm/vmm.h"

#define FAKE_RAM (64ull << 20)

static int setup(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	vm->ram_size = vm->low_size = FAKE_RAM;
	vm->ram = calloc(1, FAKE_RAM);
	vm->gmem = (struct gmem){ .ram = vm->ram,
				  .ram_size = vm->ram_size,
				  .low_size = vm->low_size };
	vm->cfg.kernel = "test.elf";
	vm->cfg.cpus = 4;
	vm->cfg.mem_mib = FAKE_RAM >> 20;
	vm->vcpus[0].fd = -1;
	*state = vm;
	return vm->ram ? 0 : -1;
}

static int teardown(void **state)
{
	struct vm *vm = *state;

	free(vm->ram);
	free(vm);
	return 0;
}

static void test_gpa_to_hva_bounds(void **state)
{
	struct vm *vm = *state;

	assert_ptr_equal(gpa_to_hva(vm, 0, 1), vm->ram);
	assert_ptr_equal(gpa_to_hva(vm, FAKE_RAM - 8, 8),
			 vm->ram + FAKE_RAM - 8);
	assert_null(gpa_to_hva(vm, FAKE_RAM - 8, 9));
	assert_null(gpa_to_hva(vm, FAKE_RAM, 1));
	assert_null(gpa_to_hva(vm, UINT64_MAX, 2)); /* wraps */
	assert_null(gpa_to_hva(vm, 16, UINT64_MAX - 8)); /* wraps */
	assert_null(gpa_to_hva(vm, VMM_HIGH_START, 1)); /* no high RAM */
	assert_null(gpa_to_hva(vm, VMM_LAPIC_BASE, 4));
}

static void test_gpa_to_hva_high_ram(void **state)
{
	/* A 4 GiB + 1 MiB layout without allocating it. */
	struct vm v = { .ram = (uint8_t *)0x10000000,
			.ram_size = VMM_HIGH_START + (1u << 20),
			.low_size = VMM_HOLE_START };
	uint64_t high = v.ram_size - v.low_size;

	v.gmem = (struct gmem){ .ram = v.ram,
				.ram_size = v.ram_size,
				.low_size = v.low_size };
	assert_ptr_equal(gpa_to_hva(&v, VMM_HIGH_START, 8),
			 v.ram + VMM_HOLE_START);
	assert_ptr_equal(gpa_to_hva(&v, VMM_HIGH_START + high - 1, 1),
			 v.ram + v.ram_size - 1);
	assert_null(gpa_to_hva(&v, VMM_HIGH_START + high - 1, 2));
	assert_null(gpa_to_hva(&v, VMM_HOLE_START, 1)); /* the hole */
	assert_null(gpa_to_hva(&v, VMM_HOLE_START - 4, 8)); /* into it */
}

/* A minimal ELF64 with one PT_LOAD at paddr and, if note, the PVH note. */
static size_t make_elf(uint8_t *img, uint64_t paddr, uint64_t filesz,
		       uint64_t memsz, int note)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	uint32_t n[6] = { 4, 4, 18, 0x006e6558, 0x100000, 0 };

	memset(img, 0, 4096);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = note ? 2 : 1;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
			      .p_offset = 1024,
			      .p_paddr = paddr,
			      .p_filesz = filesz,
			      .p_memsz = memsz };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE,
			      .p_offset = 512,
			      .p_filesz = 20 };
	memcpy(img + 512, n, 20);
	memset(img + 1024, 0x90, 1024);
	return 2048;
}

static void expect_error(struct vm *vm, const uint8_t *img, size_t len,
			 const char *words)
{
	char err[256] = "";

	assert_int_equal(boot_pvh_load(vm, img, len, err, sizeof(err)),
			 -ENOEXEC);
	if (!strstr(err, words))
		fail_msg("message '%s' lacks '%s'", err, words);
	assert_non_null(strstr(err, "test.elf"));
}

static void test_pvh_hostile_images(void **state)
{
	struct vm *vm = *state;
	uint8_t img[4096];
	size_t len;

	len = make_elf(img, 0x100000, 1024, 4096, 0);
	expect_error(vm, img, len, "PVH entry note");
	len = make_elf(img, 0x1000, 1024, 4096, 1);
	expect_error(vm, img, len, "below 1 MiB");
	len = make_elf(img, 0x100000, 1024, 512, 1);
	expect_error(vm, img, len, "below 1 MiB or file size");
	len = make_elf(img, FAKE_RAM - 4096, 1024, 8192, 1);
	expect_error(vm, img, len, "does not fit");
	len = make_elf(img, UINT64_MAX - 100, 1024, 4096, 1);
	expect_error(vm, img, len, "does not fit");
	len = make_elf(img, 0x100000, 4096, 4096, 1); /* past end of file */
	expect_error(vm, img, len, "outside the file");
	len = make_elf(img, 0x100000, 1024, 4096, 1);
	((Elf64_Ehdr *)img)->e_phoff = 1u << 30;
	expect_error(vm, img, len, "outside the file");
	len = make_elf(img, 0x100000, 1024, 4096, 1);
	((Elf64_Ehdr *)img)->e_machine = EM_AARCH64;
	expect_error(vm, img, len, "not an x86 ELF");
	expect_error(vm, img, 20, "not an x86 ELF");
}

static void test_probe(void **state)
{
	uint8_t img[4096] = { 0 };

	assert_int_equal(boot_probe(img, sizeof(img)), 0);
	assert_int_equal(boot_probe((const uint8_t *)"\177ELF", 4), 0);
	make_elf(img, 0x100000, 1024, 4096, 1);
	assert_int_equal(boot_probe(img, sizeof(img)), VMM_BOOT_PVH);
	memset(img, 0, sizeof(img));
	memcpy(img + 0x202, "HdrS", 4);
	assert_int_equal(boot_probe(img, sizeof(img)), VMM_BOOT_LINUX);
}

static void test_bzimage_too_old(void **state)
{
	struct vm *vm = *state;
	uint8_t img[8192] = { 0 };
	char err[256];

	memcpy(img + 0x202, "HdrS", 4);
	img[0x206] = 0x0a; /* protocol 2.10 */
	img[0x207] = 0x02;
	assert_int_equal(boot_linux_load(vm, img, sizeof(img), err,
					 sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "2.10 without a 64-bit entry"));
	img[0x206] = 0x0f;
	img[0x236] = 1; /* XLF_KERNEL_64 */
	img[0x1f1] = 200; /* setup beyond the file */
	assert_int_equal(boot_linux_load(vm, img, sizeof(img), err,
					 sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "truncated bzImage"));
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static void test_acpi_tables(void **state)
{
	struct vm *vm = *state;
	int64_t rsdp = acpi_build(vm);
	const uint8_t *r, *xsdt, *madt = NULL, *mcfg = NULL, *fadt = NULL;
	uint32_t len, cpus = 0;
	uint64_t x;

	assert_true(rsdp > 0);
	r = gpa_to_hva(vm, (uint64_t)rsdp, 36);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(sum(r, 36), 0);
	memcpy(&x, r + 24, 8);
	xsdt = gpa_to_hva(vm, x, 36);
	memcpy(&len, xsdt + 4, 4);
	assert_int_equal(sum(xsdt, len), 0);
	for (uint32_t o = 36; o < len; o += 8) {
		const uint8_t *t;
		uint32_t tl;

		memcpy(&x, xsdt + o, 8);
		t = gpa_to_hva(vm, x, 36);
		memcpy(&tl, t + 4, 4);
		assert_int_equal(sum(t, tl), 0);
		if (memcmp(t, "APIC", 4) == 0)
			madt = t;
		if (memcmp(t, "MCFG", 4) == 0)
			mcfg = t;
		if (memcmp(t, "FACP", 4) == 0)
			fadt = t;
	}
	assert_non_null(madt);
	/* MCFG: ECAM of segment 0, bus 0 only. */
	assert_non_null(mcfg);
	memcpy(&x, mcfg + 44, 8);
	assert_int_equal(x, PCI_ECAM_BASE);
	assert_int_equal(mcfg[54], 0);
	assert_int_equal(mcfg[55], 0);
	/* The DSDT (from the FADT) checks out and holds the PCI host bridge
	 * with its resources and interrupt routing. */
	assert_non_null(fadt);
	memcpy(&x, fadt + 140, 8);
	{
		const uint8_t *d = gpa_to_hva(vm, x, 36);
		uint32_t dl;

		memcpy(&dl, d + 4, 4);
		d = gpa_to_hva(vm, x, dl);
		assert_int_equal(sum(d, dl), 0);
		assert_non_null(memmem(d, dl, "PCI0", 4));
		assert_non_null(memmem(d, dl, "_PRT", 4));
		assert_non_null(memmem(d, dl, "_CRS", 4));
		assert_non_null(memmem(d, dl, "_S5_", 4));
	}
	memcpy(&len, madt + 4, 4);
	for (uint32_t o = 44; o < len; o += madt[o + 1])
		if (madt[o] == 0 && (madt[o + 4] & 1))
			cpus++;
	assert_int_equal(cpus, vm->cfg.cpus);
}

/* As Linux does (mpparse.c): scan the BIOS area for "_MP_", check both
 * checksums, count the enabled processors and find the IOAPIC. */
static void test_mp_table(void **state)
{
	struct vm *vm = *state;
	const uint8_t *area, *fps = NULL, *t;
	uint32_t cfg, lapic, ioapic_addr = 0;
	uint16_t len, count;
	unsigned cpus = 0, bsp = 0, ioints = 0, pci_ints = 0;

	assert_true(acpi_build(vm) > 0);
	area = gpa_to_hva(vm, 0xF0000, 0x10000);
	for (uint32_t o = 0; o < 0x10000; o += 16)
		if (memcmp(area + o, "_MP_", 4) == 0) {
			fps = area + o;
			break;
		}
	assert_non_null(fps);
	assert_int_equal(fps[8], 1);
	assert_int_equal(sum(fps, 16), 0);
	memcpy(&cfg, fps + 4, 4);
	t = gpa_to_hva(vm, cfg, 44);
	assert_memory_equal(t, "PCMP", 4);
	memcpy(&len, t + 4, 2);
	memcpy(&count, t + 34, 2);
	memcpy(&lapic, t + 36, 4);
	assert_int_equal(lapic, VMM_LAPIC_BASE);
	assert_int_equal(sum(t, len), 0);
	for (const uint8_t *e = t + 44; e < t + len; count--) {
		assert_true(count > 0);
		switch (e[0]) {
		case 0:
			cpus += e[3] & 1;
			bsp += (e[3] & 2) != 0;
			e += 20;
			break;
		case 2:
			memcpy(&ioapic_addr, e + 4, 4);
			assert_int_equal(e[1], vm->cfg.cpus);
			e += 8;
			break;
		case 3:
			if (e[4] == 1) { /* the PCI bus: INTA of a slot */
				unsigned slot = e[5] >> 2;

				assert_int_equal(e[5] & 3, 0);
				assert_int_equal(e[7],
						 PCI_INTX_GSI_BASE +
							 slot % PCI_INTX_GSIS);
				pci_ints++;
				e += 8;
				break;
			}
			ioints++;
			/* IRQ 0 goes to pin 2, as in the MADT. */
			if (e[1] == 0 && e[5] == 0)
				assert_int_equal(e[7], 2);
			e += 8;
			break;
		default:
			assert_in_range(e[0], 1, 4);
			e += 8;
		}
	}
	assert_int_equal(count, 0);
	assert_int_equal(cpus, vm->cfg.cpus);
	assert_int_equal(bsp, 1);
	assert_int_equal(ioapic_addr, VMM_IOAPIC_BASE);
	assert_int_equal(ioints, 16); /* ExtINT on pin 0 and 15 ISA IRQs */
	assert_int_equal(pci_ints, PCI_SLOTS - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gpa_to_hva_bounds, setup,
						teardown),
		cmocka_unit_test(test_gpa_to_hva_high_ram),
		cmocka_unit_test_setup_teardown(test_pvh_hostile_images, setup,
						teardown),
		cmocka_unit_test(test_probe),
		cmocka_unit_test_setup_teardown(test_bzimage_too_old, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_acpi_tables, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mp_table, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
