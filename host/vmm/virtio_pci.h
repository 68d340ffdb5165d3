/*
 * The virtio 1.x PCI transport ("modern" only), shared by every virtio
 * device of canopy-vmm through one ops table: a device model is a state
 * struct, a `static const struct virtio_dev_ops` and a virtio_pci_add call.
 * The transport knows no device.
 *
 * BAR0 layout (16 KiB): common configuration at 0x0000, ISR at 0x0100,
 * device configuration at 0x0200, queue notify at 0x1000 (4 bytes per
 * queue), MSI-X table at 0x2000, PBA at 0x3000.
 *
 * Threads: register accesses come from vCPU threads under vd->lock. Each
 * device has one worker thread that owns its queues: it polls the queues'
 * kick eventfds (KVM ioeventfds on the notify addresses, or written by the
 * MMIO fallback) and the device's own fds, and calls the device's
 * queue_notify / fd_ready there, so vCPUs never wait for device work. To
 * reset, activate, pause or snapshot the device the transport parks the
 * worker between two callbacks: a device that completes requests before
 * returning from its callback therefore never has a request in flight
 * while parked. Workers are created parked and first run when the VM
 * starts (dev_ops.resume from vmm_run), after a snapshot is fully loaded.
 */
#ifndef CANOPY_VMM_VIRTIO_PCI_H
#define CANOPY_VMM_VIRTIO_PCI_H

#include <pthread.h>
#include <stdint.h>

#include "host/vmm/pci.h"
#include "host/vmm/virtq.h"
#include "host/vmm/vmm.h"

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80
/* Transport feature bits. */
#define VIRTIO_F_VERSION_1 32
/* "No MSI-X vector". */
#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Device ids (5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5

/* Most queues per device and extra fds a device may poll. */
#define VIRTIO_MAX_QUEUES 16
#define VIRTIO_MAX_FDS 4

struct virtio_dev;

struct virtio_dev_ops {
	const char *kind; /* "virtio-blk": log lines, snapshot names */
	uint16_t device_id;
	uint32_t class_code;
	uint16_t nqueues, queue_max;
	uint32_t config_size; /* bytes of device configuration */
	/* Device feature bits offered (the transport adds VERSION_1,
	 * INDIRECT_DESC and EVENT_IDX). */
	uint64_t (*features)(struct virtio_dev *vd);
	/* Device configuration access, off + len <= config_size (vCPU
	 * thread, vd->lock held). */
	void (*config_read)(struct virtio_dev *vd, uint32_t off, void *data,
			    uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t off,
			     const void *data, uint32_t len);
	/* DRIVER_OK: queues are mapped, features final. Worker parked.
	 * Nonzero: the device cannot run (status gets NEEDS_RESET). */
	int (*activate)(struct virtio_dev *vd);
	/* Driver reset: back to initial state. Worker parked. */
	void (*reset)(struct virtio_dev *vd);
	/* Worker thread: queue q was kicked (or may have work). */
	void (*queue_notify)(struct virtio_dev *vd, unsigned q);
	/* Worker thread, before it parks: complete every request in flight
	 * (a device that hands requests to threads of its own waits for
	 * them here and pushes their completions). Optional. */
	void (*drain)(struct virtio_dev *vd);
	/* Worker thread: one of the device's fds (virtio_dev_watch) is
	 * ready; idx is the watch index. */
	void (*fd_ready)(struct virtio_dev *vd, unsigned idx, short revents);
	/* Device state beyond the transport's, for snapshots (worker
	 * parked). load gets exactly what save appended. */
	int (*save)(struct virtio_dev *vd, struct buf *out);
	int (*load)(struct virtio_dev *vd, const uint8_t *p, size_t len);
	/* Free the model (worker stopped); optional. */
	void (*destroy)(struct virtio_dev *vd);
};

struct virtio_queue {
	struct virtq vq;
	uint16_t size, msix_vector, enabled;
	_Atomic uint16_t ready; /* also cleared by needs_reset on any thread */
	uint64_t desc, driver, device;
	int kick_fd; /* eventfd: the driver notified this queue */
	int ioev_on; /* kick_fd registered as a KVM ioeventfd */
	uint64_t ioev_addr;
};

struct virtio_dev {
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	void *priv; /* the device model */
	char name[32]; /* "virtio-blk0": unique per VM */
	struct dev_ops dev_ops; /* snapshot/pause hooks, named `name` */
	struct pci_dev pci;
	pthread_mutex_t lock; /* registers (vCPU threads) */
	/* Registers. */
	uint32_t dfeat_sel, gfeat_sel;
	uint64_t host_features, guest_features;
	_Atomic uint8_t status;
	_Atomic uint8_t config_gen;
	uint16_t config_vector, queue_sel;
	_Atomic uint8_t isr;
	pthread_mutex_t isr_lock; /* isr and the INTx line change together */
	uint32_t cfgcap_off; /* PCI configuration access capability */
	struct virtio_queue q[VIRTIO_MAX_QUEUES];
	/* Worker thread and its parking protocol. */
	pthread_t worker;
	int worker_started;
	int ctl_fd; /* eventfd: wake the worker */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	int park_req, parked, quit;
	pthread_mutex_t ioev_lock; /* ioeventfd registration */
	uint64_t bar_gpa;
	int watch_fd[VIRTIO_MAX_FDS];
	short watch_events[VIRTIO_MAX_FDS];
	unsigned nwatch;
	uint64_t needs_reset_count;
};

/* Create a virtio device of kind ops with model state priv on the VM's PCI
 * bus and start its worker; the instance is named "<kind><n>". 0 or
 * -errno (message in err). The device lives until virtio_pci_destroy. */
CN_MUST_CHECK int virtio_pci_add(struct vm *vm, struct pci *bus,
				 const struct virtio_dev_ops *ops, void *priv,
				 struct virtio_dev **out, char *err,
				 size_t errlen);
/* Stop the worker and free the device (after the vCPUs are stopped). */
void virtio_pci_destroy(struct virtio_dev *vd);

/* Have the worker poll fd for events and call ops->fd_ready; before the
 * device is added to a running VM or from the worker itself. Returns the
 * watch index or -ENOSPC. */
CN_MUST_CHECK int virtio_dev_watch(struct virtio_dev *vd, int fd, short events);
/* Change the events polled for watch idx (worker thread). */
void virtio_dev_watch_events(struct virtio_dev *vd, unsigned idx, short events);
/* Stop polling watch idx for good, e.g. a dead backend whose fd would
 * report POLLERR/POLLHUP for ever (worker thread). */
void virtio_dev_unwatch(struct virtio_dev *vd, unsigned idx);

/* Worker thread: the running queue q, or NULL if the driver did not set
 * it up. */
struct virtq *virtio_queue(struct virtio_dev *vd, unsigned q);
/* Worker thread: after pushing used entries to queue q, interrupt the
 * driver if it wants one. */
void virtio_queue_signal(struct virtio_dev *vd, unsigned q);
/* The driver broke the rules (a bad chain): stop using the device until
 * it is reset (DEVICE_NEEDS_RESET, config interrupt). Any thread. */
void virtio_dev_needs_reset(struct virtio_dev *vd, const char *why);
/* Device configuration changed: new generation, config interrupt. */
void virtio_config_changed(struct virtio_dev *vd);
/* Feature bit f negotiated? */
int virtio_has_feature(const struct virtio_dev *vd, unsigned f);
/* Wake the worker so it calls queue_notify for q (e.g. a backend has
 * room again). Any thread. */
void virtio_queue_kick(struct virtio_dev *vd, unsigned q);

#endif
