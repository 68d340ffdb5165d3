/* Test guest: ACPI table lookup at CPL3 (RSDP, XSDT or RSDT) and CPU count. */
#include "guest/user.h"

#define RSDP_V1_LEN 20 /* bytes covered by the ACPI 1.0 checksum */
#define RSDP_V2_LEN 36
#define ACPI_HDR_LEN 36 /* every system description table starts so */
#define ACPI_MAX_TABLE (1u << 20) /* refuse longer tables */
#define MADT_ENTRIES 44 /* header, local APIC address, flags */
#define MADT_LAPIC 0
#define MADT_X2APIC 9
#define MADT_ENABLED 0x1
#define BIOS_AREA 0xe0000ull /* scanned for the RSDP when not given */
#define BIOS_AREA_END 0x100000ull

/* CPL3 may read [addr, addr + len): mapped, not page 0, not the kernel. */
static int readable(const struct guest_boot *b, uint64_t addr, uint64_t len)
{
	if (addr < GUEST_PAGE || addr >= b->map_top || len > b->map_top - addr)
		return 0;
	return addr + len <= GUEST_KERNEL_BASE || addr >= GUEST_USER_BASE;
}

static uint8_t checksum(const uint8_t *p, uint64_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static int rsdp_ok(const struct guest_boot *b, uint64_t a)
{
	const uint8_t *p = (const uint8_t *)a;

	return readable(b, a, RSDP_V1_LEN) && memcmp(p, "RSD PTR ", 8) == 0 &&
	       checksum(p, RSDP_V1_LEN) == 0;
}

static const uint8_t *find_rsdp(const struct guest_boot *b)
{
	if (b->rsdp && rsdp_ok(b, b->rsdp))
		return (const uint8_t *)b->rsdp;
	for (uint64_t a = BIOS_AREA; a < BIOS_AREA_END; a += 16)
		if (rsdp_ok(b, a))
			return (const uint8_t *)a;
	return NULL;
}

/* A whole, readable table with a good checksum, else NULL. */
static const uint8_t *table(const struct guest_boot *b, uint64_t a)
{
	const uint8_t *p = (const uint8_t *)a;
	uint32_t len;

	if (!readable(b, a, ACPI_HDR_LEN))
		return NULL;
	len = rd32(p + 4);
	if (len < ACPI_HDR_LEN || len > ACPI_MAX_TABLE ||
	    !readable(b, a, len) || checksum(p, len) != 0)
		return NULL;
	return p;
}

const uint8_t *user_acpi_find(const struct guest_boot *b, const char *sig)
{
	const uint8_t *rsdp = find_rsdp(b), *sdt = NULL;
	unsigned esz = 4;

	if (!rsdp)
		return NULL;
	if (rsdp[15] >= 2 && readable(b, (uint64_t)rsdp, RSDP_V2_LEN) &&
	    rd64(rsdp + 24)) {
		sdt = table(b, rd64(rsdp + 24));
		esz = 8;
	}
	if (!sdt) {
		sdt = table(b, rd32(rsdp + 16));
		esz = 4;
	}
	if (!sdt)
		return NULL;
	for (uint32_t at = ACPI_HDR_LEN; at + esz <= rd32(sdt + 4); at += esz) {
		uint64_t a = esz == 8 ? rd64(sdt + at) : rd32(sdt + at);
		const uint8_t *t = table(b, a);

		if (t && memcmp(t, sig, 4) == 0)
			return t;
	}
	return NULL;
}

unsigned user_acpi_cpus(const struct guest_boot *b)
{
	const uint8_t *madt = user_acpi_find(b, "APIC");
	unsigned n = 0;
	uint32_t len;

	if (!madt)
		return 0;
	len = rd32(madt + 4);
	for (uint32_t at = MADT_ENTRIES; at + 2 <= len;) {
		const uint8_t *e = madt + at;

		if (e[1] < 2 || at + e[1] > len)
			break;
		if (e[0] == MADT_LAPIC && e[1] >= 8 &&
		    (rd32(e + 4) & MADT_ENABLED))
			n++;
		else if (e[0] == MADT_X2APIC && e[1] >= 16 &&
			 (rd32(e + 8) & MADT_ENABLED))
			n++;
		at += e[1];
	}
	return n;
}
