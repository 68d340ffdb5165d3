/* Test guest: PCI at CPL3 through ECAM (ACPI MCFG): devices, BARs, caps. */
#ifndef GUEST_USER_PCI_H
#define GUEST_USER_PCI_H

#include "guest/user.h"
#include "lib/compiler.h"

/* Negative errno values returned by the guest's drivers (Linux numbers). */
#define USER_EIO 5 /* the device reported an I/O error */
#define USER_ENOMEM 12 /* no free guest RAM left */
#define USER_ENODEV 19 /* no such device, or no ECAM */
#define USER_EINVAL 22 /* bad argument or bad value from a device */
#define USER_ENOSPC 28 /* no room left in the MMIO hole */
#define USER_EROFS 30 /* read-only device */
#define USER_EPROTO 71 /* the device broke the protocol */
#define USER_ENOTSUP 95 /* the device lacks something we need */
#define USER_ETIMEDOUT 110 /* the device did not answer in time */

#define PCI_HOLE_START 0xc0000000ull /* the uncached hole of guest.h */
#define PCI_HOLE_END 0xfec00000ull /* IOAPIC and up: not for BARs */
#define PCI_BARS 6
#define PCI_CAP_VENDOR 0x09 /* vendor-specific capability */
#define PCI_CAP_MSIX 0x11

/* Config space offsets used outside user_pci.c. */
#define PCI_CFG_VENDOR 0x00
#define PCI_CFG_DEVICE 0x02
#define PCI_CFG_COMMAND 0x04
#define PCI_CFG_STATUS 0x06

#define PCI_MAX_USED 64 /* ranges of the hole we keep track of */

/* An address range [lo, hi) already decoded by something. */
struct user_pci_range {
	uint64_t lo, hi;
};

/* The ECAM window and what occupies the hole, to place BARs ourselves. */
struct user_pci {
	const struct guest_boot *boot;
	uint64_t ecam; /* config space of bus bus_lo */
	unsigned bus_lo, bus_hi; /* buses the MCFG entry covers */
	unsigned nfuncs; /* functions found by user_pci_init */
	unsigned nused; /* entries in used[] */
	int used_full; /* more ranges than used[] holds: place nothing */
	struct user_pci_range used[PCI_MAX_USED];
};

/* One PCI function. */
struct user_pci_dev {
	volatile uint8_t *cfg; /* its 4 KiB of ECAM config space */
	unsigned bus, dev, fn;
	uint16_t vendor, device;
	uint32_t class_code; /* base class << 16 | subclass << 8 | prog-if */
};

static inline uint8_t user_pci_read8(const struct user_pci_dev *d, unsigned o)
{
	return *(volatile uint8_t *)(d->cfg + o);
}

static inline uint16_t user_pci_read16(const struct user_pci_dev *d, unsigned o)
{
	return *(volatile uint16_t *)(d->cfg + (o & ~1u));
}

static inline uint32_t user_pci_read32(const struct user_pci_dev *d, unsigned o)
{
	return *(volatile uint32_t *)(d->cfg + (o & ~3u));
}

static inline void user_pci_write16(const struct user_pci_dev *d, unsigned o,
				    uint16_t v)
{
	*(volatile uint16_t *)(d->cfg + (o & ~1u)) = v;
}

static inline void user_pci_write32(const struct user_pci_dev *d, unsigned o,
				    uint32_t v)
{
	*(volatile uint32_t *)(d->cfg + (o & ~3u)) = v;
}

/*
 * Finds the ECAM window in the ACPI MCFG table (the entry for segment 0
 * that covers bus 0), checks that CPL3 can reach it through the identity
 * map, then walks bus 0 and the buses behind bridges, sizing every memory
 * BAR so that user_pci_bar can place new ones where nothing else is. Returns 0,
 * or -USER_ENODEV when there is no usable MCFG. CPL3 only.
 */
CN_MUST_CHECK int user_pci_init(struct user_pci *p, const struct guest_boot *b);

/*
 * The index-th function (0 first, in bus/device/function order) with this
 * vendor and device ID, filled into *d. 0, or -USER_ENODEV.
 */
CN_MUST_CHECK int user_pci_find(struct user_pci *p, uint16_t vendor,
				uint16_t device, unsigned index,
				struct user_pci_dev *d);

/*
 * Memory BAR bar of d: sized by writing all ones (decoding off meanwhile);
 * when it is unassigned or outside the identity map, placed at the lowest
 * address of [PCI_HOLE_START, PCI_HOLE_END) aligned to its size that
 * overlaps no BAR, bridge window, ECAM or memory map entry. Sets *addr and
 * *size. 0, -USER_EINVAL (I/O BAR, bad index, upper half of a 64-bit
 * BAR, size 0) or -USER_ENOSPC (no room in the hole).
 */
CN_MUST_CHECK int user_pci_bar(struct user_pci *p, const struct user_pci_dev *d,
			       unsigned bar, uint64_t *addr, uint64_t *size);

/* Turns on memory decoding and bus mastering, INTx off. */
void user_pci_enable(const struct user_pci_dev *d);

/*
 * The config offset of the first capability with this ID after offset
 * `after` (0: from the start of the list), 0 if none. A looping or
 * out-of-range list ends the walk.
 */
unsigned user_pci_cap_next(const struct user_pci_dev *d, unsigned after,
			   uint8_t id);

#endif
