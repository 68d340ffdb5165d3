/* Test guest: a polling virtio 1.x PCI driver core (split rings), at CPL3. */
#ifndef GUEST_USER_VIRTIO_H
#define GUEST_USER_VIRTIO_H

#include "guest/user_pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_MODERN_BASE 0x1040 /* device ID = this + virtio ID */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_F_VERSION_1 (1ull << 32) /* required, always negotiated */
#define VIRTIO_MAX_QUEUES 3 /* queues one driver may set up */
#define VIRTIO_QUEUE_MAX 256 /* entries per queue we ever ask for */
#define VIRTIO_TIMEOUT_MS 10000 /* default wait for one used buffer */

/* Device status bits. */
#define VIRTIO_S_ACKNOWLEDGE 0x01
#define VIRTIO_S_DRIVER 0x02
#define VIRTIO_S_DRIVER_OK 0x04
#define VIRTIO_S_FEATURES_OK 0x08
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

/* Split ring layout (virtio 1.x, 2.7), little-endian like x86. */
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_avail {
	uint16_t flags, idx;
	uint16_t ring[];
};

struct vring_used_elem {
	uint32_t id, len;
};

struct vring_used {
	uint16_t flags, idx;
	struct vring_used_elem ring[];
};

/* Bump allocator over the free RAM above the CPL3 image. */
struct user_mem {
	uint64_t next, end; /* free RAM is [next, end), page aligned */
};

/* One split virtqueue. */
struct user_virtq {
	uint16_t index, size; /* size 0: not set up */
	struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	volatile uint16_t *notify; /* its notification register */
	uint16_t free_head, num_free; /* free descriptors, chained by next */
	uint16_t last_used; /* next used ring slot to look at */
	uint16_t avail_idx; /* our copy of avail->idx */
	uint8_t *busy; /* busy[head]: a chain we gave starts there */
};

/* One device, from user_virtio_open to the end of the workload. */
struct user_virtio {
	struct user_pci_dev pci;
	const char *name; /* for messages: "blk", "balloon" */
	struct user_mem *mem;
	uint64_t tsc_khz;
	volatile uint8_t *common, *isr, *devcfg, *notify_base;
	uint32_t notify_mult, notify_len, devcfg_len;
	uint64_t dev_features, features; /* offered, negotiated */
	struct user_virtq q[VIRTIO_MAX_QUEUES];
};

/* A buffer of a descriptor chain: device_writes 0 = device reads it. */
struct user_virtio_buf {
	uint64_t addr;
	uint32_t len;
	int device_writes;
};

/*
 * Free RAM: from the page after the CPL3 image to the end of the RAM entry
 * that holds it (within the identity map). 0, or -USER_ENOMEM.
 */
CN_MUST_CHECK int user_mem_init(struct user_mem *m, const struct guest_boot *b);
/* len bytes aligned to align (a power of two), zeroed; NULL if no room. */
void *user_mem_alloc(struct user_mem *m, uint64_t len, uint64_t align);

/*
 * Finds the index-th virtio device of this type (modern or transitional
 * PCI ID), maps its capabilities (common, notify, ISR, device config),
 * resets it and sets ACKNOWLEDGE and DRIVER. Prints a line naming the
 * problem on failure: -USER_ENODEV (absent or no modern capabilities),
 * -USER_ENOSPC (BAR does not fit), -USER_ETIMEDOUT (reset never ended).
 */
CN_MUST_CHECK int user_virtio_open(struct user_virtio *v, struct user_pci *p,
				   struct user_mem *m, uint16_t type,
				   unsigned index, uint64_t tsc_khz,
				   const char *name);

/*
 * Negotiates dev_features & (wanted | VERSION_1) and checks FEATURES_OK.
 * 0, -USER_ENOTSUP (no VERSION_1, FEATURES_OK refused); prints why.
 */
CN_MUST_CHECK int user_virtio_negotiate(struct user_virtio *v, uint64_t wanted);

/*
 * Sets up queue qi with the smallest power of two >= want entries (at
 * most the device's maximum and 256), rings in fresh 4 KiB-aligned pages, no MSI-X vector and no
 * interrupts. 0, -USER_ENODEV (no such queue), -USER_ENOMEM, -USER_EPROTO.
 */
CN_MUST_CHECK int user_virtio_queue(struct user_virtio *v, unsigned qi,
				    uint16_t want);

/* Sets DRIVER_OK. 0, or -USER_EIO if the device failed or needs reset. */
CN_MUST_CHECK int user_virtio_start(struct user_virtio *v);

/*
 * Puts a chain of n buffers on queue qi's available ring (not yet
 * notified); *head identifies it in user_virtio_get. -USER_ENOSPC when
 * fewer than n descriptors are free, -USER_EINVAL for n == 0.
 */
CN_MUST_CHECK int user_virtio_add(struct user_virtio *v, unsigned qi,
				  const struct user_virtio_buf *b, unsigned n,
				  uint16_t *head);

/* Notifies the device of new buffers on qi unless it asked us not to. */
void user_virtio_kick(struct user_virtio *v, unsigned qi);

/*
 * Non-blocking: takes one used chain off queue qi if there is one (1, with
 * *head and *len set, descriptors freed), else 0. -USER_EPROTO for a used
 * id that is not a chain we gave.
 */
CN_MUST_CHECK int user_virtio_reap(struct user_virtio *v, unsigned qi,
				   uint16_t *head, uint32_t *len);

/*
 * Waits for one used chain on qi, at most timeout_ms. 0; -USER_ETIMEDOUT
 * or -USER_EIO (DEVICE_NEEDS_RESET or FAILED) with a line saying so.
 */
CN_MUST_CHECK int user_virtio_get(struct user_virtio *v, unsigned qi,
				  uint64_t timeout_ms, uint16_t *head,
				  uint32_t *len);

/* Device config space, read consistently (config_generation, at most
 * 1000 tries); 0 outside the device config capability. */
uint32_t user_virtio_cfg_read32(struct user_virtio *v, unsigned off);
uint64_t user_virtio_cfg_read64(struct user_virtio *v, unsigned off);
void user_virtio_cfg_write32(struct user_virtio *v, unsigned off, uint32_t val);
/* Device status register. */
uint8_t user_virtio_status(const struct user_virtio *v);

/* Barriers: x86 orders stores with stores and loads with loads. */
static inline void user_virtio_wmb(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline void user_virtio_rmb(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline void user_virtio_mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

#endif
