/* virtio-pci modern transport: capabilities, common configuration, queue
 * setup, notifications (ioeventfd), interrupts (MSI-X or INTx) and the
 * per-device worker thread (see virtio_pci.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "host/vmm/le.h"
#include "host/vmm/virtio_pci.h"
#include "lib/buf.h"
#include "lib/log.h"

/* BAR0 layout. */
#define VPCI_BAR_SIZE 0x4000u
#define VPCI_COMMON 0x0000u
#define VPCI_COMMON_LEN 0x38u
#define VPCI_ISR 0x0100u
#define VPCI_DEVCFG 0x0200u
#define VPCI_DEVCFG_MAX 0x0e00u
#define VPCI_NOTIFY 0x1000u
#define VPCI_NOTIFY_MULT 4u
#define VPCI_MSIX_TABLE 0x2000u
#define VPCI_MSIX_PBA 0x3000u
/* One vector per queue plus one for configuration changes. */
#define VPCI_VECTORS(ops) ((unsigned)(ops)->nqueues + 1)
/* virtio_pci_cap cfg_type values (4.1.4). */
#define VPCI_CAP_COMMON 1
#define VPCI_CAP_NOTIFY 2
#define VPCI_CAP_ISR 3
#define VPCI_CAP_DEVICE 4
#define VPCI_CAP_PCI_CFG 5
#define PCI_CAP_VENDOR 0x09
#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
/* Version of the transport state in snapshots. */
#define VPCI_STATE_VERSION 1

static const struct pci_dev_ops vpci_pci_ops;

int virtio_has_feature(const struct virtio_dev *vd, unsigned f)
{
	return (vd->guest_features >> f) & 1;
}

/* ---- worker parking ----------------------------------------------------- */

static void wake_worker(struct virtio_dev *vd)
{
	uint64_t one = 1;

	(void)!write(vd->ctl_fd, &one, sizeof(one));
}

/* Park the worker between two callbacks; returns once it is parked. */
static void park(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->wlock);
	vd->park_req++;
	wake_worker(vd);
	while (vd->worker_started && !vd->parked)
		pthread_cond_wait(&vd->wcond, &vd->wlock);
	pthread_mutex_unlock(&vd->wlock);
}

static void unpark(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->wlock);
	vd->park_req--;
	pthread_cond_broadcast(&vd->wcond);
	pthread_mutex_unlock(&vd->wlock);
}

/* ---- interrupts --------------------------------------------------------- */

/* The INTx line follows the ISR: both change under isr_lock, so a driver's
 * ISR read (which clears it and drops the line) racing with a new interrupt
 * can never leave the ISR set with the line low (a lost interrupt: the
 * guest would wait for that completion forever). */
static void intx_raise(struct virtio_dev *vd, uint8_t isr_bit)
{
	pthread_mutex_lock(&vd->isr_lock);
	atomic_fetch_or(&vd->isr, isr_bit);
	pci_intx_set(&vd->pci, 1);
	pthread_mutex_unlock(&vd->isr_lock);
}

static uint8_t isr_take(struct virtio_dev *vd)
{
	uint8_t v;

	pthread_mutex_lock(&vd->isr_lock);
	v = atomic_exchange(&vd->isr, 0);
	pci_intx_set(&vd->pci, 0);
	pthread_mutex_unlock(&vd->isr_lock);
	return v;
}

static void interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (pci_msix_enabled(&vd->pci)) {
		atomic_fetch_or(&vd->isr, isr_bit);
		/* -ENOENT: the driver turned MSI-X off meanwhile. */
		if (vector == VIRTIO_MSI_NO_VECTOR ||
		    pci_msix_notify(&vd->pci, vector) != -ENOENT)
			return;
	}
	intx_raise(vd, isr_bit);
}

void virtio_queue_signal(struct virtio_dev *vd, unsigned q)
{
	if (virtq_should_signal(&vd->q[q].vq))
		interrupt(vd, vd->q[q].msix_vector, 1);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	atomic_fetch_add(&vd->config_gen, 1);
	interrupt(vd, vd->config_vector, 2);
}

void virtio_dev_needs_reset(struct virtio_dev *vd, const char *why)
{
	uint8_t old = atomic_fetch_or(&vd->status, VIRTIO_STATUS_NEEDS_RESET);

	if (old & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vd->needs_reset_count++;
	log_warn("virtio",
		 "device needs reset: it stops until the guest "
		 "resets it",
		 "dev=%s why=\"%s\"", vd->name, why);
	for (unsigned i = 0; i < vd->ops->nqueues; i++)
		vd->q[i].ready = 0;
	interrupt(vd, vd->config_vector, 2);
}

struct virtq *virtio_queue(struct virtio_dev *vd, unsigned q)
{
	if (q >= vd->ops->nqueues || !vd->q[q].ready ||
	    (atomic_load(&vd->status) & VIRTIO_STATUS_NEEDS_RESET))
		return NULL;
	return &vd->q[q].vq;
}

void virtio_queue_kick(struct virtio_dev *vd, unsigned q)
{
	uint64_t one = 1;

	if (q < vd->ops->nqueues)
		(void)!write(vd->q[q].kick_fd, &one, sizeof(one));
}

/* ---- ioeventfds --------------------------------------------------------- */

static int ioev(struct virtio_dev *vd, unsigned q, uint64_t addr, int on)
{
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = 2, /* drivers write the 16-bit queue index */
		.fd = vd->q[q].kick_fd,
		.flags = on ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return ioctl(vd->vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

/* Register (or drop) the queues' notify addresses at the current BAR
 * address. Without an ioeventfd the MMIO exit path kicks instead. */
static void ioev_sync(struct virtio_dev *vd, int want)
{
	pthread_mutex_lock(&vd->ioev_lock);
	for (unsigned q = 0; q < vd->ops->nqueues; q++) {
		struct virtio_queue *vq = &vd->q[q];
		uint64_t addr = vd->bar_gpa + VPCI_NOTIFY +
				VPCI_NOTIFY_MULT * (uint64_t)q;
		int on = want && vd->bar_gpa && vq->ready;

		if (vq->ioev_on && (!on || vq->ioev_addr != addr)) {
			(void)ioev(vd, q, vq->ioev_addr, 0);
			vq->ioev_on = 0;
		}
		if (on && !vq->ioev_on) {
			vq->ioev_on = ioev(vd, q, addr, 1) == 0;
			vq->ioev_addr = addr;
		}
	}
	pthread_mutex_unlock(&vd->ioev_lock);
}

/* ---- status, reset, activation ------------------------------------------ */

static void queues_init(struct virtio_dev *vd)
{
	for (unsigned i = 0; i < vd->ops->nqueues; i++) {
		struct virtio_queue *q = &vd->q[i];

		q->size = vd->ops->queue_max;
		q->msix_vector = VIRTIO_MSI_NO_VECTOR;
		q->enabled = q->ready = 0;
		q->desc = q->driver = q->device = 0;
		memset(&q->vq, 0, sizeof(q->vq));
	}
}

/* Driver reset (status 0); vd->lock held. */
static void dev_reset(struct virtio_dev *vd)
{
	park(vd);
	for (unsigned i = 0; i < vd->ops->nqueues; i++)
		vd->q[i].ready = 0;
	ioev_sync(vd, 0);
	if (vd->ops->reset)
		vd->ops->reset(vd);
	queues_init(vd);
	vd->guest_features = 0;
	vd->dfeat_sel = vd->gfeat_sel = 0;
	vd->queue_sel = 0;
	vd->config_vector = VIRTIO_MSI_NO_VECTOR;
	atomic_store(&vd->status, 0);
	(void)isr_take(vd);
	unpark(vd);
}

/* Map queue i's rings; -EINVAL when the driver gave bad ones. */
static int queue_start(struct virtio_dev *vd, unsigned i)
{
	struct virtio_queue *q = &vd->q[i];
	uint16_t la = q->vq.last_avail, ui = q->vq.used_idx;

	q->vq = (struct virtq){
		.mem = &vd->vm->gmem,
		.size = q->size,
		.desc_gpa = q->desc,
		.avail_gpa = q->driver,
		.used_gpa = q->device,
		.event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX),
		.indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC),
		.last_avail = la,
		.used_idx = ui,
	};
	return virtq_start(&q->vq);
}

/* Start every enabled queue and the device; worker parked. */
static int start_queues(struct virtio_dev *vd)
{
	for (unsigned i = 0; i < vd->ops->nqueues; i++) {
		if (!vd->q[i].enabled)
			continue;
		if (queue_start(vd, i) < 0) {
			log_warn("virtio",
				 "queue rings outside guest RAM or misaligned",
				 "dev=%s queue=%u size=%u", vd->name, i,
				 vd->q[i].size);
			return -EINVAL;
		}
		vd->q[i].ready = 1;
	}
	if (vd->ops->activate && vd->ops->activate(vd) != 0)
		return -EIO;
	return 0;
}

/* DRIVER_OK set; vd->lock held. */
static void dev_activate(struct virtio_dev *vd)
{
	int rc;

	park(vd);
	rc = start_queues(vd);
	if (rc == 0)
		ioev_sync(vd, 1);
	unpark(vd);
	if (rc < 0) {
		virtio_dev_needs_reset(vd, "the driver set up a bad queue");
		return;
	}
	for (unsigned i = 0; i < vd->ops->nqueues; i++)
		if (vd->q[i].ready)
			virtio_queue_kick(vd, i); /* buffers queued before */
}

static void status_write(struct virtio_dev *vd, uint8_t v)
{
	uint8_t old = atomic_load(&vd->status);
	uint64_t want = vd->host_features;

	if (v == 0) {
		dev_reset(vd);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK) &&
	    ((vd->guest_features & ~want) ||
	     !virtio_has_feature(vd, VIRTIO_F_VERSION_1)))
		v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* refused */
	v &= (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;
	atomic_store(&vd->status,
		     (uint8_t)(v | (old & VIRTIO_STATUS_NEEDS_RESET)));
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(v & VIRTIO_STATUS_FEATURES_OK))
			virtio_dev_needs_reset(vd, "DRIVER_OK without "
						   "FEATURES_OK");
		else
			dev_activate(vd);
	}
}

/* ---- common configuration ----------------------------------------------- */

static uint64_t queue_reg_read(struct virtio_dev *vd, uint32_t off)
{
	struct virtio_queue *q;

	if (vd->queue_sel >= vd->ops->nqueues)
		return 0; /* queue_size 0: no such queue */
	q = &vd->q[vd->queue_sel];
	switch (off) {
	case 0x18:
		return q->size;
	case 0x1a:
		return q->msix_vector;
	case 0x1c:
		return q->enabled;
	case 0x1e:
		return vd->queue_sel; /* queue_notify_off */
	case 0x20:
		return q->desc;
	case 0x28:
		return q->driver;
	case 0x30:
		return q->device;
	}
	return 0;
}

static uint64_t common_read(struct virtio_dev *vd, uint32_t off)
{
	switch (off) {
	case 0x00:
		return vd->dfeat_sel;
	case 0x04:
		return vd->dfeat_sel < 2 ? (uint32_t)(vd->host_features >>
						      (32 * vd->dfeat_sel)) :
					   0;
	case 0x08:
		return vd->gfeat_sel;
	case 0x0c:
		return vd->gfeat_sel < 2 ? (uint32_t)(vd->guest_features >>
						      (32 * vd->gfeat_sel)) :
					   0;
	case 0x10:
		return vd->config_vector;
	case 0x12:
		return vd->ops->nqueues;
	case 0x14:
		return atomic_load(&vd->status);
	case 0x15:
		return atomic_load(&vd->config_gen);
	case 0x16:
		return vd->queue_sel;
	}
	return queue_reg_read(vd, off);
}

/* A vector the driver may use: one we have, or "none". */
static uint16_t vector_ok(struct virtio_dev *vd, uint64_t v)
{
	return v < VPCI_VECTORS(vd->ops) ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_half(uint64_t *r, uint32_t off, uint64_t base, uint64_t v,
		     uint32_t len)
{
	if (len == 8 && off == base) {
		*r = v;
		return;
	}
	if (off == base)
		*r = (*r & ~0xffffffffull) | (uint32_t)v;
	else
		*r = (*r & 0xffffffffull) | ((uint64_t)(uint32_t)v << 32);
}

static void queue_reg_write(struct virtio_dev *vd, uint32_t off, uint64_t v,
			    uint32_t len)
{
	struct virtio_queue *q;

	if (vd->queue_sel >= vd->ops->nqueues)
		return;
	q = &vd->q[vd->queue_sel];
	if (off == 0x1a) {
		q->msix_vector = vector_ok(vd, v);
		return;
	}
	/* The rest is fixed once the queue is enabled (4.1.4.3.2). */
	if (q->enabled)
		return;
	if (off == 0x18 && v && v <= vd->ops->queue_max && !(v & (v - 1)))
		q->size = (uint16_t)v;
	else if (off == 0x1c && v == 1)
		q->enabled = 1;
	else if (off == 0x20 || off == 0x24)
		set_half(&q->desc, off, 0x20, v, len);
	else if (off == 0x28 || off == 0x2c)
		set_half(&q->driver, off, 0x28, v, len);
	else if (off == 0x30 || off == 0x34)
		set_half(&q->device, off, 0x30, v, len);
}

static void common_write(struct virtio_dev *vd, uint32_t off, uint64_t v,
			 uint32_t len)
{
	switch (off) {
	case 0x00:
		vd->dfeat_sel = (uint32_t)v;
		return;
	case 0x08:
		vd->gfeat_sel = (uint32_t)v;
		return;
	case 0x0c:
		if (vd->gfeat_sel < 2 &&
		    !(atomic_load(&vd->status) & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * vd->gfeat_sel;

			vd->guest_features &= ~(0xffffffffull << sh);
			vd->guest_features |= (uint64_t)(uint32_t)v << sh;
		}
		return;
	case 0x10:
		vd->config_vector = vector_ok(vd, v);
		return;
	case 0x14:
		status_write(vd, (uint8_t)v);
		return;
	case 0x16:
		vd->queue_sel = (uint16_t)v;
		return;
	}
	queue_reg_write(vd, off, v, len);
}

/* ---- BAR0 --------------------------------------------------------------- */

static void bar_access(struct virtio_dev *vd, uint64_t off, void *data,
		       uint32_t len, int wr)
{
	if (off < VPCI_COMMON + VPCI_COMMON_LEN) {
		if (off + len > VPCI_COMMON_LEN)
			goto ignore;
		if (wr)
			common_write(vd, (uint32_t)off, get_le(data, len), len);
		else
			put_le(data, len, common_read(vd, (uint32_t)off));
		return;
	}
	if (off == VPCI_ISR && !wr) { /* read clears, drops INTx */
		put_le(data, len, isr_take(vd));
		return;
	}
	if (off >= VPCI_DEVCFG && off - VPCI_DEVCFG < vd->ops->config_size) {
		uint32_t o = (uint32_t)(off - VPCI_DEVCFG);

		if (len > vd->ops->config_size - o)
			goto ignore;
		if (wr && vd->ops->config_write)
			vd->ops->config_write(vd, o, data, len);
		else if (!wr)
			vd->ops->config_read(vd, o, data, len);
		return;
	}
	if (off >= VPCI_NOTIFY &&
	    off < VPCI_NOTIFY + VPCI_NOTIFY_MULT * vd->ops->nqueues) {
		/* No ioeventfd caught it (or another width): kick here. */
		if (wr && vd->q[(off - VPCI_NOTIFY) / VPCI_NOTIFY_MULT].ready)
			virtio_queue_kick(vd, (unsigned)(off - VPCI_NOTIFY) /
						      VPCI_NOTIFY_MULT);
		else if (!wr)
			put_le(data, len, 0);
		return;
	}
ignore:
	if (!wr)
		put_le(data, len, 0);
}

static void vpci_bar_read(struct pci_dev *d, unsigned bar, uint64_t off,
			  void *data, uint32_t len)
{
	struct virtio_dev *vd = d->priv;

	pthread_mutex_lock(&vd->lock);
	bar_access(vd, off, data, len, 0);
	pthread_mutex_unlock(&vd->lock);
}

static void vpci_bar_write(struct pci_dev *d, unsigned bar, uint64_t off,
			   const void *data, uint32_t len)
{
	struct virtio_dev *vd = d->priv;

	/* Notifications do not need the register lock: a queue being reset
	 * under our feet only gets one spurious kick. */
	if (off >= VPCI_NOTIFY && off < VPCI_MSIX_TABLE) {
		bar_access(vd, off, (void *)data, len, 1);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	bar_access(vd, off, (void *)data, len, 1);
	pthread_mutex_unlock(&vd->lock);
}

static void vpci_bar_moved(struct pci_dev *d, unsigned bar, uint64_t gpa)
{
	struct virtio_dev *vd = d->priv;

	vd->bar_gpa = gpa;
	ioev_sync(vd, 1);
}

/* VIRTIO_PCI_CAP_PCI_CFG: a window onto BAR0 through configuration space
 * (bar at +4, offset at +8, length at +12, data at +16). */
static void vpci_cfg_hook(struct pci_dev *d, unsigned reg, void *data,
			  uint32_t len, int wr)
{
	struct virtio_dev *vd = d->priv;
	uint32_t base = vd->cfgcap_off, off, n;
	uint8_t *c = d->cfg + base;

	if (reg != base + 16)
		return; /* only accesses to pci_cfg_data move data */
	memcpy(&off, c + 8, 4);
	memcpy(&n, c + 12, 4);
	if (c[4] != 0 || (n != 1 && n != 2 && n != 4) || n > len ||
	    off > VPCI_BAR_SIZE - n || (off & (n - 1)))
		return;
	if (wr)
		vpci_bar_write(d, 0, off, data, n);
	else
		vpci_bar_read(d, 0, off, data, n);
}

static const struct pci_dev_ops vpci_pci_ops = {
	.bar_read = vpci_bar_read,
	.bar_write = vpci_bar_write,
	.bar_moved = vpci_bar_moved,
	.cfg_hook = vpci_cfg_hook,
};

/* ---- capabilities ------------------------------------------------------- */

static int add_vcap(struct virtio_dev *vd, uint8_t type, uint32_t off,
		    uint32_t len, uint32_t extra)
{
	uint8_t cap[20] = { PCI_CAP_VENDOR, 0, 16, type, 0 };
	unsigned n = 16;

	memcpy(cap + 8, &off, 4);
	memcpy(cap + 12, &len, 4);
	if (type == VPCI_CAP_NOTIFY) {
		memcpy(cap + 16, &extra, 4);
		n = 20;
	}
	cap[2] = (uint8_t)n;
	return pci_dev_add_cap(&vd->pci, cap, NULL, n);
}

static int add_caps(struct virtio_dev *vd)
{
	uint8_t cfg[20] = { PCI_CAP_VENDOR, 0, 20, VPCI_CAP_PCI_CFG }, wm[20];
	int off;

	if (pci_dev_add_msix(&vd->pci, VPCI_VECTORS(vd->ops), 0,
			     VPCI_MSIX_TABLE, VPCI_MSIX_PBA) < 0 ||
	    add_vcap(vd, VPCI_CAP_COMMON, VPCI_COMMON, VPCI_COMMON_LEN, 0) <
		    0 ||
	    add_vcap(vd, VPCI_CAP_NOTIFY, VPCI_NOTIFY,
		     VPCI_NOTIFY_MULT * vd->ops->nqueues,
		     VPCI_NOTIFY_MULT) < 0 ||
	    add_vcap(vd, VPCI_CAP_ISR, VPCI_ISR, 1, 0) < 0 ||
	    (vd->ops->config_size && add_vcap(vd, VPCI_CAP_DEVICE, VPCI_DEVCFG,
					      vd->ops->config_size, 0) < 0))
		return -ENOSPC;
	memset(wm, 0, sizeof(wm));
	wm[4] = 0xff;
	memset(wm + 8, 0xff, 12);
	off = pci_dev_add_cap(&vd->pci, cfg, wm, sizeof(cfg));
	if (off < 0)
		return off;
	vd->cfgcap_off = (uint32_t)off;
	vd->pci.hook_off = (unsigned)off + 16;
	vd->pci.hook_len = 4;
	return 0;
}

/* ---- worker ------------------------------------------------------------- */

/* Wait while parked; 1 when the worker must exit. */
static int worker_gate(struct virtio_dev *vd)
{
	int quit;

	pthread_mutex_lock(&vd->wlock);
	if (vd->park_req && !vd->quit && vd->ops->drain) {
		/* Only this thread starts requests: none starts meanwhile. */
		pthread_mutex_unlock(&vd->wlock);
		vd->ops->drain(vd);
		pthread_mutex_lock(&vd->wlock);
	}
	while (vd->park_req && !vd->quit) {
		vd->parked = 1;
		pthread_cond_broadcast(&vd->wcond);
		pthread_cond_wait(&vd->wcond, &vd->wlock);
	}
	vd->parked = 0;
	quit = vd->quit;
	pthread_mutex_unlock(&vd->wlock);
	return quit;
}

static void worker_dispatch(struct virtio_dev *vd, struct pollfd *pf,
			    unsigned nq)
{
	uint64_t n;

	for (unsigned i = 0; i < nq; i++) {
		if (!(pf[1 + i].revents & POLLIN))
			continue;
		(void)!read(vd->q[i].kick_fd, &n, sizeof(n));
		if (virtio_queue(vd, i))
			vd->ops->queue_notify(vd, i);
	}
	for (unsigned i = 0; i < vd->nwatch; i++) {
		short r = pf[1 + nq + i].revents;

		if (r && vd->ops->fd_ready &&
		    !(atomic_load(&vd->status) & VIRTIO_STATUS_NEEDS_RESET))
			vd->ops->fd_ready(vd, i, r);
	}
}

static void *worker_main(void *arg)
{
	struct virtio_dev *vd = arg;
	struct pollfd pf[1 + VIRTIO_MAX_QUEUES + VIRTIO_MAX_FDS];
	unsigned nq = vd->ops->nqueues;
	int active;
	uint64_t n;

	while (!worker_gate(vd)) {
		/* A device that needs a reset handles no fd events, so it
		 * must not poll them (a ready fd would spin the worker). */
		active = (atomic_load(&vd->status) &
			  (VIRTIO_STATUS_DRIVER_OK |
			   VIRTIO_STATUS_NEEDS_RESET)) ==
			 VIRTIO_STATUS_DRIVER_OK;
		pf[0] = (struct pollfd){ .fd = vd->ctl_fd, .events = POLLIN };
		for (unsigned i = 0; i < nq; i++)
			pf[1 + i] = (struct pollfd){ .fd = vd->q[i].kick_fd,
						     .events = POLLIN };
		for (unsigned i = 0; i < vd->nwatch; i++)
			pf[1 + nq + i] = (struct pollfd){
				.fd = active ? vd->watch_fd[i] : -1,
				.events = vd->watch_events[i]
			};
		if (poll(pf, 1 + nq + vd->nwatch, -1) < 0)
			continue; /* EINTR */
		if (pf[0].revents & POLLIN)
			(void)!read(vd->ctl_fd, &n, sizeof(n));
		if (worker_gate(vd))
			break;
		worker_dispatch(vd, pf, nq);
	}
	return NULL;
}

int virtio_dev_watch(struct virtio_dev *vd, int fd, short events)
{
	if (vd->nwatch >= VIRTIO_MAX_FDS)
		return -ENOSPC;
	vd->watch_fd[vd->nwatch] = fd;
	vd->watch_events[vd->nwatch] = events;
	return (int)vd->nwatch++;
}

void virtio_dev_watch_events(struct virtio_dev *vd, unsigned idx, short events)
{
	if (idx < vd->nwatch)
		vd->watch_events[idx] = events;
}

void virtio_dev_unwatch(struct virtio_dev *vd, unsigned idx)
{
	if (idx < vd->nwatch)
		vd->watch_fd[idx] = -1; /* poll() skips negative fds */
}

/* ---- snapshots and pause ------------------------------------------------ */

struct vpci_state {
	uint32_t version, nqueues;
	uint64_t guest_features;
	uint32_t dfeat_sel, gfeat_sel;
	uint8_t status, config_gen, isr, pad;
	uint16_t config_vector, queue_sel;
	struct {
		uint16_t size, msix_vector, enabled, ready;
		uint16_t last_avail, used_idx, signalled_used, pad;
		uint64_t desc, driver, device;
	} q[VIRTIO_MAX_QUEUES];
};

static void vpci_pause(void *dev)
{
	park(dev);
}

static void vpci_resume(void *dev)
{
	struct virtio_dev *vd = dev;

	unpark(vd);
	for (unsigned i = 0; i < vd->ops->nqueues; i++)
		if (vd->q[i].ready)
			virtio_queue_kick(vd, i);
}

static int vpci_save(void *dev, struct buf *out)
{
	struct virtio_dev *vd = dev;
	struct vpci_state s = { .version = VPCI_STATE_VERSION };
	int rc;

	park(vd);
	pthread_mutex_lock(&vd->lock);
	s.nqueues = vd->ops->nqueues;
	s.guest_features = vd->guest_features;
	s.dfeat_sel = vd->dfeat_sel;
	s.gfeat_sel = vd->gfeat_sel;
	s.status = atomic_load(&vd->status);
	s.config_gen = atomic_load(&vd->config_gen);
	s.isr = atomic_load(&vd->isr);
	s.config_vector = vd->config_vector;
	s.queue_sel = vd->queue_sel;
	for (unsigned i = 0; i < s.nqueues; i++) {
		struct virtio_queue *q = &vd->q[i];

		s.q[i].size = q->size;
		s.q[i].msix_vector = q->msix_vector;
		s.q[i].enabled = q->enabled;
		s.q[i].ready = q->ready;
		s.q[i].last_avail = q->vq.last_avail;
		s.q[i].used_idx = q->vq.used_idx;
		s.q[i].signalled_used = q->vq.signalled_used;
		s.q[i].desc = q->desc;
		s.q[i].driver = q->driver;
		s.q[i].device = q->device;
	}
	rc = buf_append(out, &s, sizeof(s));
	if (rc == 0)
		rc = pci_dev_save(&vd->pci, out);
	if (rc == 0 && vd->ops->save)
		rc = vd->ops->save(vd, out);
	pthread_mutex_unlock(&vd->lock);
	unpark(vd);
	return rc;
}

/* Apply a checked saved state; worker parked, vd->lock held. */
static int apply_state(struct virtio_dev *vd, const struct vpci_state *s)
{
	vd->guest_features = s->guest_features;
	vd->dfeat_sel = s->dfeat_sel;
	vd->gfeat_sel = s->gfeat_sel;
	atomic_store(&vd->status, s->status);
	atomic_store(&vd->config_gen, s->config_gen);
	atomic_store(&vd->isr, s->isr);
	vd->config_vector = vector_ok(vd, s->config_vector);
	vd->queue_sel = s->queue_sel;
	for (unsigned i = 0; i < vd->ops->nqueues; i++) {
		struct virtio_queue *q = &vd->q[i];

		q->size = s->q[i].size;
		q->msix_vector = vector_ok(vd, s->q[i].msix_vector);
		q->enabled = s->q[i].enabled != 0;
		q->ready = 0;
		q->desc = s->q[i].desc;
		q->driver = s->q[i].driver;
		q->device = s->q[i].device;
		q->vq.last_avail = s->q[i].last_avail;
		q->vq.used_idx = s->q[i].used_idx;
		if (!s->q[i].ready)
			continue;
		if (queue_start(vd, i) < 0)
			return -EINVAL;
		q->vq.signalled_used = s->q[i].signalled_used;
		q->ready = 1;
	}
	return 0;
}

static int vpci_load(void *dev, const void *p, size_t len)
{
	struct virtio_dev *vd = dev;
	const uint8_t *b = p;
	struct vpci_state s;
	int rc;

	if (len < sizeof(s))
		return -EINVAL;
	memcpy(&s, b, sizeof(s));
	b += sizeof(s);
	len -= sizeof(s);
	if (s.version != VPCI_STATE_VERSION || s.nqueues != vd->ops->nqueues)
		return -EINVAL;
	for (unsigned i = 0; i < s.nqueues; i++)
		if (s.q[i].size > vd->ops->queue_max)
			return -EINVAL;
	park(vd);
	pthread_mutex_lock(&vd->lock);
	rc = apply_state(vd, &s);
	if (rc == 0)
		rc = pci_dev_load(&vd->pci, &b, &len);
	if (rc == 0 && vd->ops->load)
		rc = vd->ops->load(vd, b, len);
	else if (rc == 0 && len)
		rc = -EINVAL;
	if (rc == 0)
		ioev_sync(vd, 1);
	pthread_mutex_unlock(&vd->lock);
	unpark(vd); /* still parked until the VM runs: see vpci_resume */
	return rc;
}

static void vpci_reboot(void *dev)
{
	struct virtio_dev *vd = dev;

	pthread_mutex_lock(&vd->lock);
	dev_reset(vd);
	pci_dev_reset(&vd->pci);
	pthread_mutex_unlock(&vd->lock);
}

/* ---- creation ----------------------------------------------------------- */

static int make_fds(struct virtio_dev *vd)
{
	vd->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vd->ctl_fd < 0)
		return -errno;
	for (unsigned i = 0; i < vd->ops->nqueues; i++) {
		vd->q[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vd->q[i].kick_fd < 0)
			return -errno;
	}
	return 0;
}

static void close_fds(struct virtio_dev *vd)
{
	if (vd->ctl_fd >= 0)
		close(vd->ctl_fd);
	for (unsigned i = 0; i < vd->ops->nqueues; i++)
		if (vd->q[i].kick_fd >= 0)
			close(vd->q[i].kick_fd);
}

static struct virtio_dev *vd_alloc(struct vm *vm,
				   const struct virtio_dev_ops *ops, void *priv)
{
	struct virtio_dev *vd = calloc(1, sizeof(*vd));
	unsigned n = 0;

	if (!vd)
		return NULL;
	vd->vm = vm;
	vd->ops = ops;
	vd->priv = priv;
	vd->ctl_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vd->q[i].kick_fd = -1;
	for (unsigned i = 0; i < vm->ndevs; i++)
		if (strncmp(vm->devs[i].ops->name, ops->kind,
			    strlen(ops->kind)) == 0)
			n++;
	snprintf(vd->name, sizeof(vd->name), "%s%u", ops->kind, n);
	vd->dev_ops = (struct dev_ops){
		.name = vd->name,
		.save = vpci_save,
		.load = vpci_load,
		.reset = vpci_reboot,
		.pause = vpci_pause,
		.resume = vpci_resume,
	};
	pthread_mutex_init(&vd->lock, NULL);
	pthread_mutex_init(&vd->wlock, NULL);
	pthread_mutex_init(&vd->ioev_lock, NULL);
	pthread_mutex_init(&vd->isr_lock, NULL);
	pthread_cond_init(&vd->wcond, NULL);
	vd->host_features = (ops->features ? ops->features(vd) : 0) |
			    (1ull << VIRTIO_F_VERSION_1) |
			    (1ull << VIRTIO_F_INDIRECT_DESC) |
			    (1ull << VIRTIO_F_EVENT_IDX);
	vd->config_vector = VIRTIO_MSI_NO_VECTOR;
	queues_init(vd);
	return vd;
}

static void vd_free(struct virtio_dev *vd)
{
	close_fds(vd);
	pthread_cond_destroy(&vd->wcond);
	pthread_mutex_destroy(&vd->ioev_lock);
	pthread_mutex_destroy(&vd->isr_lock);
	pthread_mutex_destroy(&vd->wlock);
	pthread_mutex_destroy(&vd->lock);
	free(vd);
}

int virtio_pci_add(struct vm *vm, struct pci *bus,
		   const struct virtio_dev_ops *ops, void *priv,
		   struct virtio_dev **out, char *err, size_t errlen)
{
	struct virtio_dev *vd;
	int rc;

	if (ops->nqueues == 0 || ops->nqueues > VIRTIO_MAX_QUEUES ||
	    ops->config_size > VPCI_DEVCFG_MAX || !ops->queue_notify)
		return -EINVAL;
	vd = vd_alloc(vm, ops, priv);
	if (!vd)
		return -ENOMEM;
	pci_dev_init(&vd->pci, VIRTIO_PCI_VENDOR,
		     (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
		     ops->class_code, (uint16_t)(0x40 + ops->device_id));
	vd->pci.ops = &vpci_pci_ops;
	vd->pci.priv = vd;
	pci_dev_set_bar(&vd->pci, 0, VPCI_BAR_SIZE);
	rc = make_fds(vd);
	if (rc == 0)
		rc = add_caps(vd);
	if (rc == 0)
		rc = vm_dev_register(vm, &vd->dev_ops, vd);
	if (rc == 0) {
		rc = pci_dev_add(bus, &vd->pci);
		if (rc < 0)
			vm->ndevs--; /* registered just above: take it back */
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot add the device: %s", vd->name,
			 strerror(-rc));
		goto fail;
	}
	vd->bar_gpa = vd->pci.bar_gpa[0];
	rc = -pthread_create(&vd->worker, NULL, worker_main, vd);
	if (rc < 0) {
		snprintf(err, errlen, "%s: worker thread: %s", vd->name,
			 strerror(-rc));
		goto fail;
	}
	vd->worker_started = 1;
	park(vd); /* until the VM starts (vmm_run calls dev_ops.resume) */
	if (vm->nvirtio < VMM_MAX_VIRTIO)
		vm->virtio[vm->nvirtio++] = vd; /* devices_destroy frees it */
	*out = vd;
	return 0;
fail:
	vd_free(vd);
	return rc;
}

void virtio_pci_destroy(struct virtio_dev *vd)
{
	if (!vd)
		return;
	if (vd->worker_started) {
		pthread_mutex_lock(&vd->wlock);
		vd->quit = 1;
		pthread_cond_broadcast(&vd->wcond);
		pthread_mutex_unlock(&vd->wlock);
		wake_worker(vd);
		pthread_join(vd->worker, NULL);
	}
	ioev_sync(vd, 0);
	if (vd->ops->destroy)
		vd->ops->destroy(vd);
	vd_free(vd);
}
