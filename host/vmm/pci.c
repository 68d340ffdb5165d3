/* PCI bus 0: host bridge, configuration space (ports and ECAM), BAR
 * decoding and dispatch, MSI-X and INTx (see pci.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "host/vmm/le.h"
#include "host/vmm/pci.h"
#include "host/vmm/vmm.h"
#include "lib/buf.h"
#include "lib/log.h"

/* Host bridge ids: Red Hat's "QEMU PCIe host bridge", class host bridge. */
#define PCI_HOST_VENDOR 0x1b36
#define PCI_HOST_DEVICE 0x0008
#define PCI_CLASS_HOST_BRIDGE 0x060000
/* First capability offset; the header ends at 0x40. */
#define PCI_CAP_START 0x40
#define PCI_MSIX_CAP_LEN 12
#define PCI_MSIX_ENTRY 16
#define PCI_MSIX_MASKED 1u
/* Version of pci_dev_save's layout. */
#define PCI_STATE_VERSION 1

static uint16_t cfg16(const struct pci_dev *d, unsigned off)
{
	uint16_t v;

	memcpy(&v, d->cfg + off, 2);
	return v;
}

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_id)
{
	memset(d->cfg, 0, sizeof(d->cfg));
	memset(d->wmask, 0, sizeof(d->wmask));
	put16(d->cfg + PCI_VENDOR_ID, vendor);
	put16(d->cfg + PCI_VENDOR_ID + 2, device);
	d->cfg[0x08] = 1; /* revision */
	d->cfg[0x09] = (uint8_t)class_code;
	d->cfg[0x0a] = (uint8_t)(class_code >> 8);
	d->cfg[0x0b] = (uint8_t)(class_code >> 16);
	put16(d->cfg + PCI_SUBSYS_VENDOR, vendor);
	put16(d->cfg + PCI_SUBSYS_VENDOR + 2, subsys_id);
	put16(d->wmask + PCI_COMMAND,
	      PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
	d->wmask[PCI_INT_LINE] = 0xff;
	d->cfg[PCI_INT_PIN] = 1; /* INTA */
	d->cap_last = d->cap_end = 0;
	d->msix_n = 0;
	d->msix_pending = 0;
	d->intx = 0;
}

void pci_dev_set_bar(struct pci_dev *d, unsigned bar, uint32_t size)
{
	d->bar_size[bar] = size;
	/* Memory, 32-bit, not prefetchable: type bits 0. */
	put32(d->wmask + PCI_BAR0 + 4 * bar, ~(size - 1));
}

int pci_dev_add_cap(struct pci_dev *d, const uint8_t *cap, const uint8_t *wmask,
		    unsigned len)
{
	unsigned off = d->cap_end ? d->cap_end : PCI_CAP_START;

	if (len < 2 || off + len > sizeof(d->cfg))
		return -ENOSPC;
	memcpy(d->cfg + off, cap, len);
	d->cfg[off + 1] = 0;
	if (wmask)
		memcpy(d->wmask + off, wmask, len);
	d->wmask[off] = d->wmask[off + 1] = 0;
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = (uint8_t)off;
	else
		d->cfg[PCI_CAP_PTR] = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAPS;
	d->cap_last = off;
	d->cap_end = (off + len + 3) & ~3u;
	return (int)off;
}

int pci_dev_add_msix(struct pci_dev *d, unsigned n, unsigned bar,
		     uint32_t table_off, uint32_t pba_off)
{
	uint8_t cap[PCI_MSIX_CAP_LEN] = { PCI_CAP_MSIX }, wm[PCI_MSIX_CAP_LEN];
	int off;

	if (n == 0 || n > PCI_MSIX_MAX || bar >= PCI_BARS || (table_off & 7) ||
	    (pba_off & 7))
		return -EINVAL;
	memset(wm, 0, sizeof(wm));
	put16(cap + 2, (uint16_t)(n - 1));
	put16(wm + 2, PCI_MSIX_ENABLE | PCI_MSIX_MASKALL);
	put32(cap + 4, table_off | bar);
	put32(cap + 8, pba_off | bar);
	off = pci_dev_add_cap(d, cap, wm, sizeof(cap));
	if (off < 0)
		return off;
	d->msix_cap = (unsigned)off;
	d->msix_n = n;
	d->msix_bar = bar;
	d->msix_table_off = table_off;
	d->msix_pba_off = pba_off;
	for (unsigned i = 0; i < n; i++)
		d->msix[i] = (struct pci_msix_entry){ .ctrl = PCI_MSIX_MASKED };
	return 0;
}

/* ---- interrupts --------------------------------------------------------- */

static int msix_on(const struct pci_dev *d)
{
	return d->msix_n && (cfg16(d, d->msix_cap + 2) & PCI_MSIX_ENABLE);
}

static int msix_masked(const struct pci_dev *d, unsigned vec)
{
	return (cfg16(d, d->msix_cap + 2) & PCI_MSIX_MASKALL) ||
	       (d->msix[vec].ctrl & PCI_MSIX_MASKED);
}

static void msix_send(struct pci *p, const struct pci_msix_entry *e)
{
	struct kvm_msi msi = {
		.address_lo = e->addr_lo,
		.address_hi = e->addr_hi,
		.data = e->data,
	};

	if (ioctl(p->vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		log_warn("pci", "KVM_SIGNAL_MSI failed", "err=\"%s\"",
			 strerror(errno));
}

int pci_msix_enabled(struct pci_dev *d)
{
	int on;

	pthread_mutex_lock(&d->bus->lock);
	on = msix_on(d);
	pthread_mutex_unlock(&d->bus->lock);
	return on;
}

int pci_msix_notify(struct pci_dev *d, unsigned vec)
{
	struct pci_msix_entry e;
	int send = 0;

	pthread_mutex_lock(&d->bus->lock);
	if (!msix_on(d) || vec >= d->msix_n) {
		pthread_mutex_unlock(&d->bus->lock);
		return -ENOENT;
	}
	if (msix_masked(d, vec)) {
		d->msix_pending |= 1ull << vec;
	} else {
		e = d->msix[vec];
		send = 1;
	}
	pthread_mutex_unlock(&d->bus->lock);
	if (send)
		msix_send(d->bus, &e);
	return 0;
}

/* Deliver pending vectors that are no longer masked (bus lock held). */
static void msix_flush_pending(struct pci_dev *d)
{
	if (!msix_on(d))
		return;
	for (unsigned i = 0; i < d->msix_n; i++) {
		if (!(d->msix_pending & (1ull << i)) || msix_masked(d, i))
			continue;
		d->msix_pending &= ~(1ull << i);
		msix_send(d->bus, &d->msix[i]);
	}
}

/* The line of d's GSI: asserted if any device on it asserts (lock held). */
static void intx_update(struct pci *p, unsigned gsi)
{
	int level = 0;

	for (unsigned s = 1; s < PCI_SLOTS; s++) {
		struct pci_dev *d = p->dev[s];

		if (d && d->gsi == gsi && d->intx &&
		    !(cfg16(d, PCI_COMMAND) & PCI_CMD_INTX_OFF))
			level = 1;
	}
	vm_irq_line(p->vm, gsi, level);
}

void pci_intx_set(struct pci_dev *d, int level)
{
	pthread_mutex_lock(&d->bus->lock);
	d->intx = level;
	if (level)
		d->cfg[PCI_STATUS] |= PCI_STATUS_INTX;
	else
		d->cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTX;
	intx_update(d->bus, d->gsi);
	pthread_mutex_unlock(&d->bus->lock);
}

/* ---- BARs --------------------------------------------------------------- */

/* Recompute where d's BARs decode and tell the device (lock held). */
static void decode_bars(struct pci_dev *d)
{
	int mem = cfg16(d, PCI_COMMAND) & PCI_CMD_MEM;

	for (unsigned i = 0; i < PCI_BARS; i++) {
		uint64_t a = get32(d->cfg + PCI_BAR0 + 4 * i) & ~0xfull;
		uint64_t gpa = 0;

		if (!d->bar_size[i])
			continue;
		/* We dispatch only the MMIO window: a BAR elsewhere decodes
		 * nothing (as if it pointed at no-man's land). */
		if (mem && a >= PCI_MMIO_BASE &&
		    a + d->bar_size[i] <= PCI_MMIO_BASE + PCI_MMIO_SIZE)
			gpa = a;
		if (gpa == d->bar_gpa[i])
			continue;
		d->bar_gpa[i] = gpa;
		if (d->ops && d->ops->bar_moved)
			d->ops->bar_moved(d, i, gpa);
	}
}

static void msix_access(struct pci_dev *d, uint64_t off, void *data,
			uint32_t len, int wr)
{
	uint32_t v = 0;

	if (len != 4 && len != 8) {
		if (!wr)
			memset(data, 0, len);
		return; /* the spec allows only dword and qword accesses */
	}
	if (len == 8) { /* two dwords */
		msix_access(d, off, data, 4, wr);
		msix_access(d, off + 4, (uint8_t *)data + 4, 4, wr);
		return;
	}
	if (off >= d->msix_pba_off) { /* pending bits, read-only */
		uint64_t o = off - d->msix_pba_off;

		if (!wr) {
			v = o < 8 ? (uint32_t)(d->msix_pending >> (8 * o)) : 0;
			memcpy(data, &v, 4);
		}
		return;
	}
	off -= d->msix_table_off;
	unsigned vec = (unsigned)(off / PCI_MSIX_ENTRY);
	uint32_t *f = &d->msix[vec].addr_lo + (off % PCI_MSIX_ENTRY) / 4;

	if (vec >= d->msix_n || (off & 3)) {
		if (!wr)
			memset(data, 0, 4);
		return;
	}
	if (!wr) {
		memcpy(data, f, 4);
		return;
	}
	memcpy(&v, data, 4);
	if (f == &d->msix[vec].ctrl)
		v &= PCI_MSIX_MASKED;
	*f = v;
	msix_flush_pending(d);
}

/* Is [off, off+len) of bar inside d's MSI-X table or PBA? */
static int in_msix(const struct pci_dev *d, unsigned bar, uint64_t off)
{
	if (!d->msix_n || bar != d->msix_bar)
		return 0;
	if (off >= d->msix_table_off &&
	    off < d->msix_table_off + PCI_MSIX_ENTRY * (uint64_t)d->msix_n)
		return 1;
	return off >= d->msix_pba_off && off < d->msix_pba_off + 8;
}

static void window_access(struct pci *p, uint64_t off, void *data, uint32_t len,
			  int wr)
{
	uint64_t gpa = PCI_MMIO_BASE + off;

	pthread_mutex_lock(&p->lock);
	for (unsigned s = 1; s < PCI_SLOTS; s++) {
		struct pci_dev *d = p->dev[s];

		if (!d)
			continue;
		for (unsigned i = 0; i < PCI_BARS; i++) {
			uint64_t o = gpa - d->bar_gpa[i];

			if (!d->bar_gpa[i] || gpa < d->bar_gpa[i] ||
			    o >= d->bar_size[i])
				continue;
			if (in_msix(d, i, o)) {
				msix_access(d, o, data, len, wr);
				pthread_mutex_unlock(&p->lock);
				return;
			}
			pthread_mutex_unlock(&p->lock);
			if (wr)
				d->ops->bar_write(d, i, o, data, len);
			else
				d->ops->bar_read(d, i, o, data, len);
			return;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (!wr)
		memset(data, 0xff, len);
}

static void window_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	window_access(dev, off, data, len, 0);
}

static void window_write(void *dev, uint64_t off, const void *data,
			 uint32_t len)
{
	window_access(dev, off, (void *)data, len, 1);
}

static const struct io_ops window_ops = {
	.name = "pci-mmio",
	.read = window_read,
	.write = window_write,
};

/* ---- configuration space ------------------------------------------------ */

static struct pci_dev *slot_dev(struct pci *p, unsigned bus, unsigned slot,
				unsigned fn)
{
	if (bus != 0 || fn != 0 || slot >= PCI_SLOTS)
		return NULL;
	return slot == 0 ? &p->host : p->dev[slot];
}

static void cfg_access(struct pci *p, struct pci_dev *d, unsigned reg,
		       void *data, uint32_t len, int wr)
{
	uint16_t cmd_before;

	if (!d) {
		if (!wr)
			memset(data, 0xff, len);
		return;
	}
	if (reg >= sizeof(d->cfg) || reg + len > sizeof(d->cfg)) {
		if (!wr)
			memset(data, 0, len); /* no extended capabilities */
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (!wr) {
		memcpy(data, d->cfg + reg, len);
		pthread_mutex_unlock(&p->lock);
		goto hook;
	}
	cmd_before = cfg16(d, PCI_COMMAND);
	for (uint32_t i = 0; i < len; i++) {
		uint8_t m = d->wmask[reg + i], v = ((const uint8_t *)data)[i];

		d->cfg[reg + i] = (uint8_t)((d->cfg[reg + i] & ~m) | (v & m));
	}
	if (reg < PCI_BAR0 + 4 * PCI_BARS && reg + len > PCI_COMMAND)
		decode_bars(d);
	if ((cmd_before ^ cfg16(d, PCI_COMMAND)) & PCI_CMD_INTX_OFF)
		intx_update(p, d->gsi);
	if (d->msix_n && reg < d->msix_cap + 4 && reg + len > d->msix_cap + 2)
		msix_flush_pending(d);
	pthread_mutex_unlock(&p->lock);
hook:
	if (d->hook_len && reg < d->hook_off + d->hook_len &&
	    reg + len > d->hook_off && d->ops && d->ops->cfg_hook)
		d->ops->cfg_hook(d, reg, data, len, wr);
}

static void ecam_access(void *dev, uint64_t off, void *data, uint32_t len,
			int wr)
{
	struct pci *p = dev;
	unsigned reg = (unsigned)(off & 0xfff);

	/* Naturally aligned accesses of 1, 2 or 4 bytes only. */
	if ((len != 1 && len != 2 && len != 4) || (reg & (len - 1))) {
		if (!wr)
			memset(data, 0xff, len);
		return;
	}
	cfg_access(p,
		   slot_dev(p, (unsigned)(off >> 20), (off >> 15) & 31,
			    (off >> 12) & 7),
		   reg, data, len, wr);
}

static void ecam_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	ecam_access(dev, off, data, len, 0);
}

static void ecam_write(void *dev, uint64_t off, const void *data, uint32_t len)
{
	ecam_access(dev, off, (void *)data, len, 1);
}

static const struct io_ops ecam_ops = {
	.name = "pci-ecam",
	.read = ecam_read,
	.write = ecam_write,
};

/* Port 0xCF8 (address, dword accesses only) at off 0, and 0xCFC-0xCFF
 * (data) at off 4..7. */
static void port_access(void *dev, uint64_t off, void *data, uint32_t len,
			int wr)
{
	struct pci *p = dev;
	uint32_t a;

	if (off < 4) {
		if (off != 0 || len != 4) { /* probes by byte: ignore */
			if (!wr)
				memset(data, 0xff, len);
			return;
		}
		pthread_mutex_lock(&p->lock);
		if (wr)
			memcpy(&p->config_addr, data, 4);
		else
			memcpy(data, &p->config_addr, 4);
		pthread_mutex_unlock(&p->lock);
		return;
	}
	pthread_mutex_lock(&p->lock);
	a = p->config_addr;
	pthread_mutex_unlock(&p->lock);
	if (!(a & 0x80000000u) || off + len > 8) {
		if (!wr)
			memset(data, 0xff, len);
		return;
	}
	cfg_access(p,
		   slot_dev(p, (a >> 16) & 0xff, (a >> 11) & 31, (a >> 8) & 7),
		   (a & 0xfc) + (unsigned)(off - 4), data, len, wr);
}

static void port_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	port_access(dev, off, data, len, 0);
}

static void port_write(void *dev, uint64_t off, const void *data, uint32_t len)
{
	port_access(dev, off, (void *)data, len, 1);
}

static const struct io_ops port_ops = {
	.name = "pci-conf1",
	.read = port_read,
	.write = port_write,
};

/* The data ports: a range of their own, so that 0xCF9 (reset control,
 * dev_platform.c) stays separate. */
static void data_read(void *dev, uint64_t off, void *data, uint32_t len)
{
	port_access(dev, off + 4, data, len, 0);
}

static void data_write(void *dev, uint64_t off, const void *data, uint32_t len)
{
	port_access(dev, off + 4, (void *)data, len, 1);
}

static const struct io_ops data_ops = {
	.name = "pci-conf1-data",
	.read = data_read,
	.write = data_write,
};

/* ---- bus ---------------------------------------------------------------- */

int pci_create(struct vm *vm, struct pci **out)
{
	struct pci *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	pthread_mutex_init(&p->lock, NULL);
	p->next_bar = PCI_MMIO_BASE;
	p->host.bus = p;
	pci_dev_init(&p->host, PCI_HOST_VENDOR, PCI_HOST_DEVICE,
		     PCI_CLASS_HOST_BRIDGE, 0);
	p->host.cfg[PCI_INT_PIN] = 0;
	rc = io_bus_add(&vm->pio, PCI_PORT_CONFIG_ADDR, 1, &port_ops, p);
	if (rc == 0)
		rc = io_bus_add(&vm->pio, PCI_PORT_CONFIG_DATA, 4, &data_ops,
				p);
	if (rc == 0)
		rc = io_bus_add(&vm->mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE,
				&ecam_ops, p);
	if (rc == 0)
		rc = io_bus_add(&vm->mmio, PCI_MMIO_BASE, PCI_MMIO_SIZE,
				&window_ops, p);
	if (rc < 0) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void pci_destroy(struct pci *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int pci_dev_add(struct pci *p, struct pci_dev *d)
{
	unsigned s;

	for (s = 1; s < PCI_SLOTS && p->dev[s]; s++)
		;
	if (s == PCI_SLOTS)
		return -ENOSPC;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		uint64_t size = d->bar_size[i], a;

		if (!size)
			continue;
		a = (p->next_bar + size - 1) & ~(size - 1);
		if (a + size > PCI_MMIO_BASE + PCI_MMIO_SIZE)
			return -ENOSPC;
		put32(d->cfg + PCI_BAR0 + 4 * i, (uint32_t)a);
		p->next_bar = a + size;
	}
	d->bus = p;
	d->slot = s;
	d->gsi = PCI_INTX_GSI_BASE + s % PCI_INTX_GSIS;
	d->cfg[PCI_INT_LINE] = (uint8_t)d->gsi;
	memcpy(d->cfg_init, d->cfg, sizeof(d->cfg));
	pthread_mutex_lock(&p->lock);
	p->dev[s] = d;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void pci_dev_reset(struct pci_dev *d)
{
	pthread_mutex_lock(&d->bus->lock);
	memcpy(d->cfg, d->cfg_init, sizeof(d->cfg));
	for (unsigned i = 0; i < d->msix_n; i++)
		d->msix[i] = (struct pci_msix_entry){ .ctrl = PCI_MSIX_MASKED };
	d->msix_pending = 0;
	d->intx = 0;
	decode_bars(d);
	intx_update(d->bus, d->gsi);
	pthread_mutex_unlock(&d->bus->lock);
}

/* ---- state -------------------------------------------------------------- */

struct pci_state {
	uint32_t version, msix_n;
	uint8_t cfg[256];
	struct pci_msix_entry msix[PCI_MSIX_MAX];
	uint64_t pending;
	uint32_t intx, pad;
};

int pci_dev_save(struct pci_dev *d, struct buf *out)
{
	struct pci_state s = { .version = PCI_STATE_VERSION };

	pthread_mutex_lock(&d->bus->lock);
	s.msix_n = d->msix_n;
	memcpy(s.cfg, d->cfg, sizeof(s.cfg));
	memcpy(s.msix, d->msix, sizeof(s.msix));
	s.pending = d->msix_pending;
	s.intx = (uint32_t)d->intx;
	pthread_mutex_unlock(&d->bus->lock);
	return buf_append(out, &s, sizeof(s));
}

int pci_dev_load(struct pci_dev *d, const uint8_t **p, size_t *len)
{
	struct pci_state s;

	if (*len < sizeof(s))
		return -EINVAL;
	memcpy(&s, *p, sizeof(s));
	/* The layout must match what this VMM built for the device: same
	 * ids, same BAR sizes and the same vector count. */
	if (s.version != PCI_STATE_VERSION || s.msix_n != d->msix_n ||
	    memcmp(s.cfg, d->cfg, 4) != 0)
		return -EINVAL;
	*p += sizeof(s);
	*len -= sizeof(s);
	pthread_mutex_lock(&d->bus->lock);
	for (unsigned i = 0; i < sizeof(s.cfg); i++) /* read-only stays ours */
		d->cfg[i] = (uint8_t)((d->cfg[i] & ~d->wmask[i]) |
				      (s.cfg[i] & d->wmask[i]));
	d->cfg[PCI_STATUS] = (uint8_t)((d->cfg[PCI_STATUS] & ~PCI_STATUS_INTX) |
				       (s.cfg[PCI_STATUS] & PCI_STATUS_INTX));
	memcpy(d->msix, s.msix, sizeof(d->msix));
	for (unsigned i = 0; i < PCI_MSIX_MAX; i++)
		d->msix[i].ctrl &= PCI_MSIX_MASKED;
	d->msix_pending = s.pending &
			  (d->msix_n >= 64 ? ~0ull : (1ull << d->msix_n) - 1);
	d->intx = s.intx != 0;
	decode_bars(d);
	intx_update(d->bus, d->gsi);
	pthread_mutex_unlock(&d->bus->lock);
	return 0;
}
