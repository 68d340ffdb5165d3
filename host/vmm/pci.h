/*
 * PCI for canopy-vmm: one host bridge (bus 0), configuration space through
 * ports 0xCF8/0xCFC and through ECAM (MMIO, announced in the ACPI MCFG
 * table), 32-bit memory BARs placed by the VMM in the MMIO window below
 * 4 GiB (the guest may move them), MSI-X with masking and pending bits,
 * INTx as a level line on the in-kernel IOAPIC.
 *
 * Threads: configuration and BAR accesses arrive on vCPU threads; device
 * threads raise interrupts (pci_msix_notify, pci_intx_set). pci.c guards
 * configuration space and the MSI-X table with the bus lock; a device
 * guards its own BAR state. BAR callbacks are called without the bus lock.
 */
#ifndef CANOPY_VMM_PCI_H
#define CANOPY_VMM_PCI_H

#include <pthread.h>
#include <stdint.h>

#include "lib/compiler.h"

struct vm;

/* ECAM for bus 0 (32 devices x 8 functions x 4 KiB). */
#define PCI_ECAM_BASE 0xE0000000ull
#define PCI_ECAM_SIZE 0x100000ull
/* Where the VMM places BARs and where it dispatches BAR accesses. */
#define PCI_MMIO_BASE 0xC0000000ull
#define PCI_MMIO_SIZE 0x20000000ull
/* Configuration mechanism #1. */
#define PCI_PORT_CONFIG_ADDR 0xCF8
#define PCI_PORT_CONFIG_DATA 0xCFC
/* Slots on bus 0; slot 0 is the host bridge. */
#define PCI_SLOTS 32
#define PCI_BARS 6
/* IOAPIC inputs for INTx: slot s, pin INTA uses PCI_INTX_GSI_BASE + s % 8. */
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_GSIS 8
/* Most MSI-X vectors one device may have. */
#define PCI_MSIX_MAX 64

/* Configuration space offsets and bits we use. */
#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d
#define PCI_CMD_MEM 0x0002
#define PCI_CMD_MASTER 0x0004
#define PCI_CMD_INTX_OFF 0x0400
#define PCI_STATUS_INTX 0x0008
#define PCI_STATUS_CAPS 0x0010
#define PCI_CAP_MSIX 0x11
#define PCI_MSIX_ENABLE 0x8000
#define PCI_MSIX_MASKALL 0x4000

struct pci_dev;

/* What a device behind the bus implements; BAR offsets are relative to the
 * BAR. Accesses to the MSI-X table and PBA are handled by pci.c. */
struct pci_dev_ops {
	void (*bar_read)(struct pci_dev *d, unsigned bar, uint64_t off,
			 void *data, uint32_t len);
	void (*bar_write)(struct pci_dev *d, unsigned bar, uint64_t off,
			  const void *data, uint32_t len);
	/* A BAR's guest address changed (0: no longer decoded). Bus lock
	 * held; must not call back into pci.c. */
	void (*bar_moved)(struct pci_dev *d, unsigned bar, uint64_t gpa);
	/* An access to [hook_off, hook_off + hook_len) of configuration
	 * space, after the masked write (or with the read value in data,
	 * which the hook may replace). Called without the bus lock. */
	void (*cfg_hook)(struct pci_dev *d, unsigned reg, void *data,
			 uint32_t len, int wr);
};

struct pci_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct pci_dev {
	struct pci *bus;
	unsigned slot;
	const struct pci_dev_ops *ops;
	void *priv; /* the device model */
	uint8_t cfg[256];
	uint8_t wmask[256]; /* bits the guest may write */
	uint8_t cfg_init[256]; /* power-on contents, for pci_dev_reset */
	unsigned hook_off, hook_len; /* see cfg_hook */
	unsigned cap_last, cap_end; /* capability list: last one, free space */
	uint32_t bar_size[PCI_BARS]; /* 0 = no BAR */
	uint64_t bar_gpa[PCI_BARS]; /* decoded address, 0 when off */
	/* MSI-X (all under the bus lock). */
	unsigned msix_n, msix_bar, msix_cap;
	uint32_t msix_table_off, msix_pba_off;
	struct pci_msix_entry msix[PCI_MSIX_MAX];
	uint64_t msix_pending; /* PBA */
	int intx; /* INTx line level we drive */
	unsigned gsi;
};

struct pci {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t config_addr; /* port 0xCF8 */
	struct pci_dev *dev[PCI_SLOTS];
	struct pci_dev host;
	uint64_t next_bar; /* next free address in the MMIO window */
};

/* Create the bus (host bridge, config ports, ECAM, MMIO window) on vm.
 * 0 or -errno. */
CN_MUST_CHECK int pci_create(struct vm *vm, struct pci **out);
void pci_destroy(struct pci *p);

/* Fill d's header: ids, class, one interrupt pin. Then add BARs and
 * capabilities, then pci_dev_add. */
void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_id);
/* A 32-bit non-prefetchable memory BAR of size bytes (power of 2, >= 4 KiB). */
void pci_dev_set_bar(struct pci_dev *d, unsigned bar, uint32_t size);
/* Append a capability of len bytes (first two bytes: id, next — filled
 * here) copied from cap; returns its offset or -ENOSPC. wmask marks the
 * guest-writable bits of it (NULL: read-only). */
CN_MUST_CHECK int pci_dev_add_cap(struct pci_dev *d, const uint8_t *cap,
				  const uint8_t *wmask, unsigned len);
/* An MSI-X capability with n vectors whose table and PBA live in bar at
 * the given offsets. 0 or -errno. */
CN_MUST_CHECK int pci_dev_add_msix(struct pci_dev *d, unsigned n, unsigned bar,
				   uint32_t table_off, uint32_t pba_off);
/* Put d into the first free slot, assign its BARs. 0 or -ENOSPC. */
CN_MUST_CHECK int pci_dev_add(struct pci *p, struct pci_dev *d);

/* Back to power-on state (guest reboot): configuration space as added,
 * MSI-X masked, nothing pending, INTx low. */
void pci_dev_reset(struct pci_dev *d);

/* Raise MSI-X vector vec of d (delivered now, or pending while masked).
 * -ENOENT when MSI-X is off or vec does not exist (use INTx instead). */
int pci_msix_notify(struct pci_dev *d, unsigned vec);
/* Is MSI-X enabled on d? */
int pci_msix_enabled(struct pci_dev *d);
/* Drive d's INTx line (level). */
void pci_intx_set(struct pci_dev *d, int level);

/* For snapshots: configuration space, MSI-X table and pending bits.
 * load re-decodes the BARs (calling bar_moved). */
struct buf;
CN_MUST_CHECK int pci_dev_save(struct pci_dev *d, struct buf *out);
CN_MUST_CHECK int pci_dev_load(struct pci_dev *d, const uint8_t **p,
			       size_t *len);

#endif
