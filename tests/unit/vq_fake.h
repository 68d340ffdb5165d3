/*
 * A fake guest for virtqueue and virtio device-model tests: guest RAM in a
 * malloc-free mmap with PROT_NONE guard pages on both sides (so a touch
 * outside guest RAM faults), a low part at GPA 0 and a high part at
 * GMEM_HIGH_START, and a tiny driver that lays out split rings in it.
 *
 * Single-threaded test code; every function aborts the test (cmocka
 * assertion) rather than return an error.
 */
#ifndef CANOPY_TESTS_VQ_FAKE_H
#define CANOPY_TESTS_VQ_FAKE_H

#include <stdint.h>

#include "host/vmm/virtq.h"

/* Default layout: 256 KiB low, 64 KiB high. */
#define VQF_LOW (256u << 10)
#define VQF_HIGH (64u << 10)
/* Where vqf_init puts the rings (low RAM) and where data may go. */
#define VQF_DESC 0x1000ull
#define VQF_DATA 0x20000ull

struct vqf {
	struct gmem m;
	uint8_t *map; /* whole mapping: guard, RAM, guard */
	size_t map_len;
	struct virtq q;
	uint16_t avail_idx; /* the driver's copy */
};

/* RAM of low + high bytes (page multiples), zeroed, with guard pages. */
void vqf_mem_init(struct vqf *f, uint64_t low, uint64_t high);
void vqf_mem_free(struct vqf *f);

/* vqf_mem_init with the default layout, and a queue of `size` entries
 * at desc/avail/used laid out one after the other from VQF_DESC (not
 * started). */
void vqf_init(struct vqf *f, uint16_t size);
/* Place the rings at explicit addresses (not started). */
void vqf_rings(struct vqf *f, uint16_t size, uint64_t desc, uint64_t avail,
	       uint64_t used);

/* Host pointer to guest range [gpa, gpa + len); asserts it is RAM. */
void *vqf_ptr(struct vqf *f, uint64_t gpa, uint64_t len);

/* Write descriptor i of the queue's table (or of a table at gpa). */
void vqf_desc(struct vqf *f, uint16_t i, uint64_t addr, uint32_t len,
	      uint16_t flags, uint16_t next);
void vqf_desc_at(struct vqf *f, uint64_t table, uint16_t i, uint64_t addr,
		 uint32_t len, uint16_t flags, uint16_t next);

/* Make head available (ring entry and idx), as a driver does. */
void vqf_avail(struct vqf *f, uint16_t head);
/* Set the avail idx as the driver sees it, without ring entries. */
void vqf_avail_idx(struct vqf *f, uint16_t idx);
void vqf_avail_flags(struct vqf *f, uint16_t flags);
/* used_event (the last avail ring word, for EVENT_IDX). */
void vqf_used_event(struct vqf *f, uint16_t v);

/* Used ring as the driver reads it. */
uint16_t vqf_used_idx(struct vqf *f);
void vqf_used_elem(struct vqf *f, uint16_t slot, uint32_t *id, uint32_t *len);
/* avail_event (the last used ring word). */
uint16_t vqf_avail_event(struct vqf *f);

/* Does [p, p + len) lie inside guest RAM's host buffer? */
int vqf_inside(const struct vqf *f, const void *p, size_t len);

#endif
