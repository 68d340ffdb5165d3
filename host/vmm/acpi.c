/* Firmware tables: ACPI (RSDP, XSDT, FADT, DSDT, MADT) and an Intel MP table
 * (spec 1.4), so guests find CPUs, the IOAPIC and power control. */
#include <errno.h>
#include <string.h>

#include "host/vmm/le.h"
#include "host/vmm/pci.h"
#include "host/vmm/vmm.h"

/* Offsets of the tables inside the ACPI area. */
#define ACPI_OFF_RSDP 0x0
#define ACPI_OFF_XSDT 0x40
#define ACPI_OFF_FADT 0x100
#define ACPI_OFF_MADT 0x400
#define ACPI_OFF_MCFG 0x1000
#define ACPI_OFF_DSDT 0x2000
#define ACPI_MCFG_LEN (ACPI_HDR_LEN + 8 + 16)
#define ACPI_HDR_LEN 36
#define ACPI_FADT_LEN 244
/* FADT flags: WBINVD, PROC_C1, SLP_BUTTON (none), RESET_REG_SUP. */
#define FADT_FLAGS ((1u << 0) | (1u << 2) | (1u << 5) | (1u << 10))
/* IA-PC boot architecture: legacy devices, but no 8042 (we emulate only
 * its reset line; a guest probing for a keyboard controller would wait
 * for answers that never come). */
#define FADT_IAPC_BOOT_ARCH 0x1
/* The i8042 reset: write 0xFE to port 0x64. */
#define ACPI_RESET_PORT 0x64
#define ACPI_RESET_VALUE 0xfe

/* Name (_S5, Package () { 5, 5, 0, 0 }) — the SLP_TYP for power-off that
 * dev_platform.c recognises in PM1a_CNT. */
static const uint8_t aml_s5[] = {
	0x08, '_',  'S',  '5',	'_',  0x12, 0x08,
	0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
};

/* PCI0's _CRS: bus 0, the config ports, I/O around them, the MMIO window. */
static const uint8_t pci_crs[] = {
	/* WordBusNumber: producer, min/max fixed, 0..0, length 1 */
	0x88,
	0x0d,
	0x00,
	0x02,
	0x0c,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x01,
	0x00,
	/* IO (Decode16, 0xCF8, 0xCF8, 1, 8) */
	0x47,
	0x01,
	0xf8,
	0x0c,
	0xf8,
	0x0c,
	0x01,
	0x08,
	/* WordIO 0x0000-0x0CF7 */
	0x88,
	0x0d,
	0x00,
	0x01,
	0x0c,
	0x03,
	0x00,
	0x00,
	0x00,
	0x00,
	0xf7,
	0x0c,
	0x00,
	0x00,
	0xf8,
	0x0c,
	/* WordIO 0x0D00-0xFFFF */
	0x88,
	0x0d,
	0x00,
	0x01,
	0x0c,
	0x03,
	0x00,
	0x00,
	0x00,
	0x0d,
	0xff,
	0xff,
	0x00,
	0x00,
	0x00,
	0xf3,
	/* DWordMemory, read-write, non-cacheable: PCI_MMIO_BASE, 512 MiB */
	0x87,
	0x17,
	0x00,
	0x00,
	0x0c,
	0x01,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0xc0,
	0xff,
	0xff,
	0xff,
	0xdf,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x00,
	0x20,
	/* End tag */
	0x79,
	0x00,
};
_Static_assert(PCI_MMIO_BASE == 0xC0000000ull && PCI_MMIO_SIZE == 0x20000000ull,
	       "pci_crs describes the MMIO window");

/* AML PkgLength of a body of n bytes (the encoding's own bytes
 * included); writes it at p and returns its size (1 or 2). */
static unsigned aml_pkglen(uint8_t *p, unsigned n)
{
	if (n + 1 < 64) {
		p[0] = (uint8_t)(n + 1);
		return 1;
	}
	n += 2;
	p[0] = (uint8_t)(0x40 | (n & 0xf));
	p[1] = (uint8_t)(n >> 4);
	return 2;
}

/* op (one or two bytes), PkgLength, then the n bytes of body: the shape of
 * every AML package-like term (Scope, Device, Package, Buffer). */
static unsigned aml_pkg(uint8_t *p, const uint8_t *op, unsigned nop,
			const uint8_t *body, unsigned n)
{
	unsigned k = nop;

	memcpy(p, op, nop);
	k += aml_pkglen(p + k, n);
	memcpy(p + k, body, n);
	return k + n;
}

/* Name (NAME, DWord) for an EISA id or a small integer. */
static unsigned aml_name_dword(uint8_t *p, const char *name, uint32_t v)
{
	p[0] = 0x08;
	memcpy(p + 1, name, 4);
	p[5] = 0x0c;
	memcpy(p + 6, &v, 4);
	return 10;
}

/* Name (_PRT, Package () { Package () { 0xSSSSFFFF, 0, 0, GSI }, ... })
 * for INTA of slots 1..31 (pci.c's routing). */
static unsigned aml_prt(uint8_t *p)
{
	uint8_t body[PCI_SLOTS * 12 + 8];
	unsigned n = 0, k = 0;

	body[n++] = PCI_SLOTS - 1; /* NumElements */
	for (unsigned s = 1; s < PCI_SLOTS; s++) {
		uint32_t adr = (s << 16) | 0xffff;

		body[n++] = 0x12; /* Package */
		body[n++] = 11; /* PkgLength: 1 + 1 + 5 + 1 + 1 + 2 */
		body[n++] = 4;
		body[n++] = 0x0c;
		memcpy(body + n, &adr, 4);
		n += 4;
		body[n++] = 0x00; /* pin INTA */
		body[n++] = 0x00; /* source: global GSI */
		body[n++] = 0x0a;
		body[n++] = (uint8_t)(PCI_INTX_GSI_BASE + s % PCI_INTX_GSIS);
	}
	p[k++] = 0x08;
	memcpy(p + k, "_PRT", 4);
	k += 4;
	return k + aml_pkg(p + k, (const uint8_t[]){ 0x12 }, 1, body, n);
}

/* Device (PCI0): the host bridge, so that ACPI guests find bus 0. */
static unsigned aml_pci0(uint8_t *p)
{
	uint8_t body[1024];
	unsigned n = 0;

	memcpy(body, "PCI0", 4);
	n = 4;
	n += aml_name_dword(body + n, "_HID", 0x080ad041); /* PNP0A08 */
	n += aml_name_dword(body + n, "_CID", 0x030ad041); /* PNP0A03 */
	n += aml_name_dword(body + n, "_SEG", 0);
	n += aml_name_dword(body + n, "_BBN", 0);
	n += aml_name_dword(body + n, "_UID", 0);
	body[n++] = 0x08;
	memcpy(body + n, "_CRS", 4);
	n += 4;
	{
		uint8_t buf[2 + sizeof(pci_crs)] = { 0x0a, sizeof(pci_crs) };

		memcpy(buf + 2, pci_crs, sizeof(pci_crs));
		n += aml_pkg(body + n, (const uint8_t[]){ 0x11 }, 1, buf,
			     sizeof(buf)); /* Buffer */
	}
	n += aml_prt(body + n);
	return aml_pkg(p, (const uint8_t[]){ 0x5b, 0x82 }, 2, body, n);
}

/* Scope (\_SB) { Device (PCI0) {...} } */
static unsigned aml_sb(uint8_t *p)
{
	uint8_t body[1100];
	unsigned n = 0;

	body[n++] = '\\';
	memcpy(body + n, "_SB_", 4);
	n += 4;
	n += aml_pci0(body + n);
	return aml_pkg(p, (const uint8_t[]){ 0x10 }, 1, body, n); /* Scope */
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return (uint8_t)-s;
}

static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "CANOPY", 6);
	memcpy(t + 16, "CANOPYVM", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "CNPY", 4);
	put32(t + 32, 1);
}

static void finish(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = checksum(t, len);
}

/* Generic address structure for a system I/O register. */
static void gas_io(uint8_t *g, uint8_t bits, uint64_t port)
{
	g[0] = 1; /* system I/O */
	g[1] = bits;
	g[2] = 0;
	g[3] = bits == 8 ? 1 : bits == 16 ? 2 : 3; /* access size */
	put64(g + 4, port);
}

/* MCFG: ECAM of segment 0, bus 0 only. */
static void build_mcfg(uint8_t *t)
{
	memset(t, 0, ACPI_MCFG_LEN);
	header(t, "MCFG", ACPI_MCFG_LEN, 1);
	put64(t + 44, PCI_ECAM_BASE);
	/* segment 0, buses 0..0 */
	finish(t, ACPI_MCFG_LEN);
}

static void build_fadt(uint8_t *t, uint64_t dsdt)
{
	memset(t, 0, ACPI_FADT_LEN);
	header(t, "FACP", ACPI_FADT_LEN, 4);
	put32(t + 40, (uint32_t)dsdt);
	put16(t + 46, VMM_IRQ_SCI);
	put32(t + 56, VMM_PORT_PM1A_EVT);
	put32(t + 64, VMM_PORT_PM1A_CNT);
	put32(t + 76, VMM_PORT_PM_TMR);
	t[88] = 4; /* PM1_EVT_LEN */
	t[89] = 2; /* PM1_CNT_LEN */
	t[91] = 4; /* PM_TMR_LEN */
	put16(t + 96, 0x65); /* C2 latency: not supported */
	put16(t + 98, 0x3e9); /* C3 latency: not supported */
	put16(t + 109, FADT_IAPC_BOOT_ARCH);
	put32(t + 112, FADT_FLAGS);
	gas_io(t + 116, 8, ACPI_RESET_PORT);
	t[128] = ACPI_RESET_VALUE;
	put64(t + 140, dsdt);
	gas_io(t + 148, 32, VMM_PORT_PM1A_EVT);
	gas_io(t + 172, 16, VMM_PORT_PM1A_CNT);
	gas_io(t + 208, 32, VMM_PORT_PM_TMR);
	finish(t, ACPI_FADT_LEN);
}

static uint32_t build_madt(struct vm *vm, uint8_t *t)
{
	uint32_t len = ACPI_HDR_LEN + 8;
	uint8_t *e;

	put32(t + 36, (uint32_t)VMM_LAPIC_BASE);
	put32(t + 40, 1); /* PCAT_COMPAT: there are 8259s too */
	for (unsigned i = 0; i < vm->cfg.cpus; i++) {
		e = t + len;
		e[0] = 0; /* processor local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i;
		e[3] = (uint8_t)i;
		put32(e + 4, 1); /* enabled */
		len += 8;
	}
	e = t + len; /* I/O APIC, id after the CPUs, GSI 0.. */
	memset(e, 0, 12);
	e[0] = 1;
	e[1] = 12;
	e[2] = (uint8_t)vm->cfg.cpus;
	put32(e + 4, (uint32_t)VMM_IOAPIC_BASE);
	len += 12;
	e = t + len; /* ISA IRQ 0 (PIT) is GSI 2 */
	e[0] = 2;
	e[1] = 10;
	e[2] = 0;
	e[3] = 0;
	put32(e + 4, 2);
	put16(e + 8, 0);
	len += 10;
	e = t + len; /* the SCI is level-triggered, active high */
	e[0] = 2;
	e[1] = 10;
	e[2] = 0;
	e[3] = VMM_IRQ_SCI;
	put32(e + 4, VMM_IRQ_SCI);
	put16(e + 8, 0xd);
	len += 10;
	header(t, "APIC", len, 3);
	put32(t + 36, (uint32_t)VMM_LAPIC_BASE);
	put32(t + 40, 1);
	finish(t, len);
	return len;
}

/* MP table entry sizes and types (Intel MP spec 1.4, chapter 4). */
#define MP_FPS_LEN 16
#define MP_HDR_LEN 44
#define MP_CPU_LEN 20
#define MP_ENTRY_LEN 8
#define MP_CPU 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_IOINT 3
#define MP_LINT 4
#define MP_INT 0 /* vectored interrupt */
#define MP_NMI 1
#define MP_EXTINT 3
#define MP_ISA_IRQS 16
#define MP_PCI_BUS 1
/* Polarity active high (01), trigger level (11): the SCI, as in the MADT. */
#define MP_LEVEL_HIGH 0x0d

static uint8_t *mp_entry(uint8_t *e, uint8_t type, uint8_t a, uint16_t b,
			 uint8_t c, uint8_t d, uint8_t f)
{
	e[0] = type;
	e[1] = a;
	put16(e + 2, b);
	e[4] = c;
	e[5] = d;
	e[6] = f;
	e[7] = 0;
	return e + MP_ENTRY_LEN;
}

/* The MP floating pointer and configuration table at VMM_MPTABLE_BASE, for
 * guests that do not read ACPI (Linux with acpi=off, older systems). */
static int mptable_build(struct vm *vm)
{
	uint8_t *fps = gpa_to_hva(vm, VMM_MPTABLE_BASE, VMM_MPTABLE_SIZE);
	uint8_t *t, *e;
	uint8_t ioapic = (uint8_t)vm->cfg.cpus;
	uint16_t count = 0;
	uint32_t len;

	if (!fps)
		return -EINVAL;
	memset(fps, 0, VMM_MPTABLE_SIZE);
	t = fps + MP_FPS_LEN;
	memcpy(t, "PCMP", 4);
	t[6] = 4; /* spec 1.4 */
	memcpy(t + 8, "CANOPY  ", 8);
	memcpy(t + 16, "CANOPY-VMM  ", 12);
	put32(t + 36, (uint32_t)VMM_LAPIC_BASE);
	e = t + MP_HDR_LEN;
	for (unsigned i = 0; i < vm->cfg.cpus; i++, count++) {
		e[0] = MP_CPU;
		e[1] = (uint8_t)i; /* local APIC id */
		e[2] = 0x14; /* local APIC version (integrated) */
		e[3] = (uint8_t)(1 | (i == 0 ? 2 : 0)); /* enabled, BSP */
		put32(e + 4, 0x600); /* family 6 */
		put32(e + 8, (1u << 0) | (1u << 9)); /* FPU, APIC */
		e += MP_CPU_LEN;
	}
	e[0] = MP_BUS;
	e[1] = 0;
	memcpy(e + 2, "ISA   ", 6);
	e += MP_ENTRY_LEN;
	count++;
	e[0] = MP_BUS;
	e[1] = MP_PCI_BUS;
	memcpy(e + 2, "PCI   ", 6);
	e += MP_ENTRY_LEN;
	count++;
	e[0] = MP_IOAPIC;
	e[1] = ioapic;
	e[2] = 0x11; /* IOAPIC version */
	e[3] = 1; /* enabled */
	put32(e + 4, (uint32_t)VMM_IOAPIC_BASE);
	e += MP_ENTRY_LEN;
	count++;
	/* The 8259 behind pin 0, then ISA IRQs as the MADT has them: IRQ 0 on
	 * pin 2, the others identity-mapped, the SCI level-triggered. */
	e = mp_entry(e, MP_IOINT, MP_EXTINT, 0, 0, 0, ioapic);
	e[-1] = 0;
	count++;
	for (uint8_t irq = 0; irq < MP_ISA_IRQS; irq++) {
		if (irq == 2)
			continue;
		e = mp_entry(e, MP_IOINT, MP_INT,
			     irq == VMM_IRQ_SCI ? MP_LEVEL_HIGH : 0, 0, irq,
			     ioapic);
		e[-1] = irq == 0 ? 2 : irq;
		count++;
	}
	/* PCI INTA of each slot, routed as pci.c drives it. */
	for (unsigned sl = 1; sl < PCI_SLOTS; sl++, count++) {
		e = mp_entry(e, MP_IOINT, MP_INT, 0, MP_PCI_BUS,
			     (uint8_t)(sl << 2), ioapic);
		e[-1] = (uint8_t)(PCI_INTX_GSI_BASE + sl % PCI_INTX_GSIS);
	}
	e = mp_entry(e, MP_LINT, MP_EXTINT, 0, 0, 0, 0xff);
	count++;
	e = mp_entry(e, MP_LINT, MP_NMI, 0, 0, 0, 0xff);
	e[-1] = 1;
	count++;
	len = (uint32_t)(e - t);
	put16(t + 4, (uint16_t)len);
	put16(t + 34, count);
	t[7] = checksum(t, len);

	memcpy(fps, "_MP_", 4);
	put32(fps + 4, (uint32_t)(VMM_MPTABLE_BASE + MP_FPS_LEN));
	fps[8] = 1; /* length in 16-byte units */
	fps[9] = 4; /* spec 1.4 */
	fps[10] = checksum(fps, MP_FPS_LEN);
	return 0;
}

int64_t acpi_build(struct vm *vm)
{
	uint8_t *a = gpa_to_hva(vm, VMM_ACPI_BASE, VMM_ACPI_SIZE);
	uint8_t *rsdp, *xsdt, *dsdt;
	uint32_t dsdt_len = ACPI_HDR_LEN;

	if (!a || vm->cfg.cpus > 250 || mptable_build(vm) < 0)
		return -EINVAL;
	memset(a, 0, VMM_ACPI_SIZE);
	dsdt = a + ACPI_OFF_DSDT;
	memcpy(dsdt + dsdt_len, aml_s5, sizeof(aml_s5));
	dsdt_len += sizeof(aml_s5);
	dsdt_len += aml_sb(dsdt + dsdt_len);
	header(dsdt, "DSDT", dsdt_len, 2);
	finish(dsdt, dsdt_len);
	build_mcfg(a + ACPI_OFF_MCFG);
	build_fadt(a + ACPI_OFF_FADT, VMM_ACPI_BASE + ACPI_OFF_DSDT);
	build_madt(vm, a + ACPI_OFF_MADT);

	xsdt = a + ACPI_OFF_XSDT;
	header(xsdt, "XSDT", ACPI_HDR_LEN + 24, 1);
	put64(xsdt + 36, VMM_ACPI_BASE + ACPI_OFF_FADT);
	put64(xsdt + 44, VMM_ACPI_BASE + ACPI_OFF_MADT);
	put64(xsdt + 52, VMM_ACPI_BASE + ACPI_OFF_MCFG);
	finish(xsdt, ACPI_HDR_LEN + 24);

	rsdp = a + ACPI_OFF_RSDP;
	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "CANOPY", 6);
	rsdp[15] = 2; /* revision: ACPI 2.0+, XSDT */
	put32(rsdp + 20, 36);
	put64(rsdp + 24, VMM_ACPI_BASE + ACPI_OFF_XSDT);
	rsdp[8] = checksum(rsdp, 20);
	rsdp[32] = checksum(rsdp, 36);
	return (int64_t)(VMM_ACPI_BASE + ACPI_OFF_RSDP);
}
