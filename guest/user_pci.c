/* Test guest: PCI enumeration and BAR placement through ECAM, at CPL3. */
#include "guest/user_pci.h"

#define MCFG_ENTRIES 44 /* ACPI header (36) and 8 reserved bytes */
#define MCFG_ENTRY_LEN 16 /* base (8), segment (2), start and end bus */
#define ECAM_BUS_SHIFT 20
#define ECAM_DEV_SHIFT 15
#define ECAM_FN_SHIFT 12
#define PCI_DEVS 32
#define PCI_FNS 8
#define PCI_BUSES 256

#define PCI_CFG_REVCLASS 0x08
#define PCI_CFG_HDRTYPE 0x0e
#define PCI_CFG_BAR0 0x10
#define PCI_CFG_SECONDARY 0x19 /* type 1: the bus behind the bridge */
#define PCI_CFG_MEM_BASE 0x20 /* type 1: non-prefetchable window */
#define PCI_CFG_PREF_BASE 0x24 /* type 1: prefetchable window */
#define PCI_CFG_PREF_UPPER 0x28 /* type 1: upper 32 bits of base, limit */
#define PCI_CFG_ROM 0x30 /* type 0 expansion ROM BAR */
#define PCI_CFG_CAPS 0x34

#define PCI_CMD_IO 0x0001
#define PCI_CMD_MEM 0x0002
#define PCI_CMD_MASTER 0x0004
#define PCI_CMD_INTX_OFF 0x0400
#define PCI_STATUS_CAPS 0x0010
#define PCI_HDR_MULTI 0x80
#define PCI_HDR_BRIDGE 0x01
#define PCI_BAR_IO 0x1
#define PCI_BAR_64 0x4 /* type field (bits 2:1) == 2 */
#define PCI_BAR_TYPE 0x6
#define PCI_BAR_MASK 0xfffffff0u
#define PCI_ROM_MASK 0xfffff800u
#define PCI_CAP_MAX 48 /* (256 - 64) / 4 entries at most */

/* Visitor for walk(): nonzero stops the walk and is returned. */
typedef int (*visit_fn)(struct user_pci *p, const struct user_pci_dev *d,
			void *arg);

static uint64_t cfg_addr(const struct user_pci *p, unsigned bus, unsigned dev,
			 unsigned fn)
{
	return p->ecam + ((uint64_t)bus << ECAM_BUS_SHIFT) +
	       ((uint64_t)dev << ECAM_DEV_SHIFT) +
	       ((uint64_t)fn << ECAM_FN_SHIFT);
}

/* The MCFG entry for segment 0 that covers bus 0, clipped to the map. */
static int mcfg_read(struct user_pci *p, const struct guest_boot *b)
{
	const uint8_t *t = user_acpi_find(b, "MCFG");
	uint32_t len;

	if (!t)
		return -USER_ENODEV;
	__builtin_memcpy(&len, t + 4, 4);
	for (uint32_t at = MCFG_ENTRIES; at + MCFG_ENTRY_LEN <= len;
	     at += MCFG_ENTRY_LEN) {
		uint64_t base, top;
		uint16_t seg;

		__builtin_memcpy(&base, t + at, 8);
		__builtin_memcpy(&seg, t + at + 8, 2);
		if (seg != 0 || t[at + 10] != 0 || t[at + 11] < t[at + 10])
			continue;
		p->ecam = base;
		p->bus_lo = 0;
		p->bus_hi = t[at + 11];
		/* Only buses whose whole config space CPL3 can reach. */
		if (base < GUEST_USER_BASE || base >= b->map_top ||
		    (base & ((1ull << ECAM_BUS_SHIFT) - 1)))
			return -USER_ENODEV;
		top = (b->map_top - base) >> ECAM_BUS_SHIFT;
		if (top == 0)
			return -USER_ENODEV;
		if (p->bus_hi >= top)
			p->bus_hi = (unsigned)top - 1;
		return 0;
	}
	return -USER_ENODEV;
}

static void dev_fill(const struct user_pci *p, struct user_pci_dev *d,
		     unsigned bus, unsigned dev, unsigned fn)
{
	d->cfg = (volatile uint8_t *)cfg_addr(p, bus, dev, fn);
	d->bus = bus;
	d->dev = dev;
	d->fn = fn;
	d->vendor = user_pci_read16(d, PCI_CFG_VENDOR);
	d->device = user_pci_read16(d, PCI_CFG_DEVICE);
	d->class_code = user_pci_read32(d, PCI_CFG_REVCLASS) >> 8;
}

static int walk_bus(struct user_pci *p, unsigned bus, uint8_t *seen,
		    visit_fn fn, void *arg);

/* One function: visit it, then the bus behind it if it is a bridge. */
static int walk_fn(struct user_pci *p, const struct user_pci_dev *d,
		   uint8_t *seen, visit_fn fn, void *arg)
{
	unsigned sec;
	int r = fn(p, d, arg);

	if (r)
		return r;
	if ((user_pci_read8(d, PCI_CFG_HDRTYPE) & 0x7f) != PCI_HDR_BRIDGE)
		return 0;
	sec = user_pci_read8(d, PCI_CFG_SECONDARY);
	if (sec <= d->bus || sec > p->bus_hi)
		return 0;
	return walk_bus(p, sec, seen, fn, arg);
}

/* Every function on bus, each bus once (seen is a 256-bit set). */
static int walk_bus(struct user_pci *p, unsigned bus, uint8_t *seen,
		    visit_fn fn, void *arg)
{
	if (seen[bus / 8] & (1u << (bus % 8)))
		return 0;
	seen[bus / 8] |= (uint8_t)(1u << (bus % 8));
	for (unsigned dev = 0; dev < PCI_DEVS; dev++) {
		for (unsigned f = 0; f < PCI_FNS; f++) {
			struct user_pci_dev d;
			int r;

			dev_fill(p, &d, bus, dev, f);
			if (d.vendor == 0xffff || d.vendor == 0) {
				if (f == 0)
					break;
				continue;
			}
			r = walk_fn(p, &d, seen, fn, arg);
			if (r)
				return r;
			if (f == 0 && !(user_pci_read8(&d, PCI_CFG_HDRTYPE) &
					PCI_HDR_MULTI))
				break;
		}
	}
	return 0;
}

static int walk(struct user_pci *p, visit_fn fn, void *arg)
{
	uint8_t seen[PCI_BUSES / 8];

	memset(seen, 0, sizeof(seen));
	return walk_bus(p, p->bus_lo, seen, fn, arg);
}

/*
 * Sizes the BAR at config offset off (mask: its address bits) with memory
 * and I/O decoding off. *raw gets the 64-bit register value, *size 0 when
 * the BAR is not implemented.
 */
static void bar_size(const struct user_pci_dev *d, unsigned off, uint32_t mask,
		     int is64, uint64_t *raw, uint64_t *size)
{
	uint16_t cmd = user_pci_read16(d, PCI_CFG_COMMAND);
	uint32_t lo = user_pci_read32(d, off), hi = 0, slo, shi = 0xffffffffu;

	user_pci_write16(d, PCI_CFG_COMMAND,
			 (uint16_t)(cmd & ~(PCI_CMD_MEM | PCI_CMD_IO)));
	user_pci_write32(d, off, 0xffffffffu);
	slo = user_pci_read32(d, off);
	user_pci_write32(d, off, lo);
	if (is64) {
		hi = user_pci_read32(d, off + 4);
		user_pci_write32(d, off + 4, 0xffffffffu);
		shi = user_pci_read32(d, off + 4);
		user_pci_write32(d, off + 4, hi);
	}
	user_pci_write16(d, PCI_CFG_COMMAND, cmd);
	*raw = (uint64_t)hi << 32 | lo;
	slo &= mask;
	*size = slo ? ~((uint64_t)shi << 32 | slo) + 1 : 0;
}

/* Records [base, base + size) if it touches the hole. */
static void note_used(struct user_pci *p, uint64_t base, uint64_t size)
{
	uint64_t end = base + size;

	if (!size || end < base || end <= PCI_HOLE_START ||
	    base >= PCI_HOLE_END)
		return;
	if (p->nused == PCI_MAX_USED) {
		p->used_full = 1;
		return;
	}
	p->used[p->nused++] = (struct user_pci_range){ base, end };
}

/* A bridge's memory windows (non-prefetchable, prefetchable). */
static void note_bridge(struct user_pci *p, const struct user_pci_dev *d)
{
	uint64_t base =
		(uint64_t)(user_pci_read16(d, PCI_CFG_MEM_BASE) & 0xfff0) << 16;
	uint64_t lim =
		(uint64_t)(user_pci_read16(d, PCI_CFG_MEM_BASE + 2) & 0xfff0)
		<< 16;

	if (lim >= base)
		note_used(p, base, lim + 0x100000 - base);
	base = (uint64_t)(user_pci_read16(d, PCI_CFG_PREF_BASE) & 0xfff0) << 16;
	lim = (uint64_t)(user_pci_read16(d, PCI_CFG_PREF_BASE + 2) & 0xfff0)
	      << 16;
	base |= (uint64_t)user_pci_read32(d, PCI_CFG_PREF_UPPER) << 32;
	lim |= (uint64_t)user_pci_read32(d, PCI_CFG_PREF_UPPER + 4) << 32;
	if (lim >= base)
		note_used(p, base, lim + 0x100000 - base);
}

/* walk() visitor for init: count, and note what every BAR occupies. */
static int note_fn(struct user_pci *p, const struct user_pci_dev *d, void *arg)
{
	int bridge = (user_pci_read8(d, PCI_CFG_HDRTYPE) & 0x7f) ==
		     PCI_HDR_BRIDGE;
	unsigned nbars = bridge ? 2 : PCI_BARS;
	uint64_t raw, size;

	(void)arg;
	p->nfuncs++;
	for (unsigned i = 0; i < nbars; i++) {
		unsigned off = PCI_CFG_BAR0 + 4 * i;
		uint32_t lo = user_pci_read32(d, off);
		int is64 = (lo & PCI_BAR_TYPE) == PCI_BAR_64;

		if (lo & PCI_BAR_IO)
			continue;
		bar_size(d, off, PCI_BAR_MASK, is64 && i + 1 < nbars, &raw,
			 &size);
		note_used(p, raw & ~0xfull, size);
		if (is64)
			i++;
	}
	if (bridge) {
		note_bridge(p, d);
		return 0;
	}
	bar_size(d, PCI_CFG_ROM, PCI_ROM_MASK, 0, &raw, &size);
	note_used(p, raw & PCI_ROM_MASK, size);
	return 0;
}

int user_pci_init(struct user_pci *p, const struct guest_boot *b)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->boot = b;
	r = mcfg_read(p, b);
	if (r)
		return r;
	note_used(p, p->ecam,
		  (uint64_t)(p->bus_hi + 1) << ECAM_BUS_SHIFT); /* ECAM */
	for (uint32_t i = 0; i < b->nmem; i++)
		note_used(p, b->mem[i].addr, b->mem[i].size);
	r = walk(p, note_fn, NULL);
	return r < 0 ? r : 0;
}

struct find_arg {
	uint16_t vendor, device;
	unsigned index;
	struct user_pci_dev *out;
};

static int find_fn(struct user_pci *p, const struct user_pci_dev *d, void *arg)
{
	struct find_arg *a = arg;

	(void)p;
	if (d->vendor != a->vendor || d->device != a->device)
		return 0;
	if (a->index--)
		return 0;
	*a->out = *d;
	return 1;
}

int user_pci_find(struct user_pci *p, uint16_t vendor, uint16_t device,
		  unsigned index, struct user_pci_dev *d)
{
	struct find_arg a = { vendor, device, index, d };

	return walk(p, find_fn, &a) == 1 ? 0 : -USER_ENODEV;
}

/* The lowest free address for size bytes aligned to size, 0 if none. */
static uint64_t hole_find(const struct user_pci *p, uint64_t size)
{
	uint64_t a = (PCI_HOLE_START + size - 1) & ~(size - 1);

	for (unsigned pass = 0; pass <= p->nused; pass++) {
		int moved = 0;

		if (a < PCI_HOLE_START || size > PCI_HOLE_END - a)
			return 0;
		for (unsigned i = 0; i < p->nused; i++) {
			const struct user_pci_range *u = &p->used[i];

			if (u->hi <= a || u->lo >= a + size)
				continue;
			a = (u->hi + size - 1) & ~(size - 1);
			moved = 1;
			break;
		}
		if (!moved)
			return a;
	}
	return 0;
}

/* Places a BAR of this size where nothing else is and records it. */
static int bar_place(struct user_pci *p, const struct user_pci_dev *d,
		     unsigned off, int is64, uint64_t size, uint64_t *addr)
{
	uint16_t cmd = user_pci_read16(d, PCI_CFG_COMMAND);
	uint64_t a;

	if (p->used_full || size > PCI_HOLE_END - PCI_HOLE_START)
		return -USER_ENOSPC;
	a = hole_find(p, size);
	if (!a || p->nused == PCI_MAX_USED)
		return -USER_ENOSPC;
	user_pci_write16(d, PCI_CFG_COMMAND, (uint16_t)(cmd & ~PCI_CMD_MEM));
	user_pci_write32(d, off,
			 (uint32_t)a | (user_pci_read32(d, off) & 0xfu));
	if (is64)
		user_pci_write32(d, off + 4, (uint32_t)(a >> 32));
	user_pci_write16(d, PCI_CFG_COMMAND, cmd);
	note_used(p, a, size);
	*addr = a;
	return 0;
}

int user_pci_bar(struct user_pci *p, const struct user_pci_dev *d, unsigned bar,
		 uint64_t *addr, uint64_t *size)
{
	unsigned off = PCI_CFG_BAR0 + 4 * bar;
	uint32_t lo;
	uint64_t raw, base;
	int is64, r;

	if (bar >= PCI_BARS)
		return -USER_EINVAL;
	lo = user_pci_read32(d, off);
	is64 = (lo & PCI_BAR_TYPE) == PCI_BAR_64;
	if ((lo & PCI_BAR_IO) || (is64 && bar + 1 >= PCI_BARS))
		return -USER_EINVAL;
	bar_size(d, off, PCI_BAR_MASK, is64, &raw, size);
	if (*size == 0 || (*size & (*size - 1)))
		return -USER_EINVAL;
	base = raw & ~0xfull;
	if (!is64)
		base &= 0xffffffffull;
	if (base >= GUEST_USER_BASE && base < p->boot->map_top &&
	    *size <= p->boot->map_top - base) {
		*addr = base;
		return 0;
	}
	r = bar_place(p, d, off, is64, *size, addr);
	if (!r)
		user_printf("pci: %02x:%02x.%x bar %u at 0x%lx (size 0x%lx) "
			    "moved to 0x%lx\n",
			    d->bus, d->dev, d->fn, bar, base, *size, *addr);
	return r;
}

void user_pci_enable(const struct user_pci_dev *d)
{
	uint16_t cmd = user_pci_read16(d, PCI_CFG_COMMAND);

	user_pci_write16(d, PCI_CFG_COMMAND,
			 (uint16_t)(cmd | PCI_CMD_MEM | PCI_CMD_MASTER |
				    PCI_CMD_INTX_OFF));
}

unsigned user_pci_cap_next(const struct user_pci_dev *d, unsigned after,
			   uint8_t id)
{
	unsigned pos;

	if (!(user_pci_read16(d, PCI_CFG_STATUS) & PCI_STATUS_CAPS))
		return 0;
	pos = after ? user_pci_read8(d, after + 1) :
		      user_pci_read8(d, PCI_CFG_CAPS);
	for (unsigned n = 0; n < PCI_CAP_MAX; n++) {
		pos &= 0xfc;
		if (pos < 0x40)
			return 0;
		if (user_pci_read8(d, pos) == id)
			return pos;
		pos = user_pci_read8(d, pos + 1);
	}
	return 0;
}
