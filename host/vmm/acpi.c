/* Firmware tables: ACPI (RSDP, XSDT, FADT, DSDT, MADT) and an Intel MP table
 * (spec 1.4), so guests find CPUs, the IOAPIC and power control. */
#include <errno.h>
#include <string.h>

#include "host/vmm/vmm.h"

/* Offsets of the tables inside the ACPI area. */
#define ACPI_OFF_RSDP 0x0
#define ACPI_OFF_XSDT 0x40
#define ACPI_OFF_FADT 0x100
#define ACPI_OFF_DSDT 0x200
#define ACPI_OFF_MADT 0x400
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

/* DSDT body: Name (_S5, Package () { 5, 5, 0, 0 }) — the SLP_TYP for
 * power-off that dev_platform.c recognises in PM1a_CNT. */
static const uint8_t dsdt_aml[] = {
	0x08, '_',  'S',  '5',	'_',  0x12, 0x08,
	0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
};

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
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
	uint32_t dsdt_len = ACPI_HDR_LEN + sizeof(dsdt_aml);

	if (!a || vm->cfg.cpus > 250 || mptable_build(vm) < 0)
		return -EINVAL;
	memset(a, 0, VMM_ACPI_SIZE);
	dsdt = a + ACPI_OFF_DSDT;
	header(dsdt, "DSDT", dsdt_len, 2);
	memcpy(dsdt + ACPI_HDR_LEN, dsdt_aml, sizeof(dsdt_aml));
	finish(dsdt, dsdt_len);
	build_fadt(a + ACPI_OFF_FADT, VMM_ACPI_BASE + ACPI_OFF_DSDT);
	build_madt(vm, a + ACPI_OFF_MADT);

	xsdt = a + ACPI_OFF_XSDT;
	header(xsdt, "XSDT", ACPI_HDR_LEN + 16, 1);
	put64(xsdt + 36, VMM_ACPI_BASE + ACPI_OFF_FADT);
	put64(xsdt + 44, VMM_ACPI_BASE + ACPI_OFF_MADT);
	finish(xsdt, ACPI_HDR_LEN + 16);

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
