/*
 * Shared by the libFuzzer harnesses of tests/fuzz/: how an input becomes a
 * guest (RAM contents and one queue's configuration).
 *
 * Input: a 16-byte header, then bytes copied into guest RAM from GPA 0.
 *   u16 size            queue size, as the driver would write it
 *   u8  features        bit 0 INDIRECT_DESC, bit 1 EVENT_IDX
 *   u8  high            bit k: ring k (desc, avail, used) is in high RAM
 *   u16 desc, avail, used   ring offsets (in low RAM, or in high RAM)
 *   u16 last_avail, used_idx   the device's indices
 *   u8  spare           (fuzz_blk: bit 0 read-only disk)
 *   u8  logging         bit 0: dirty logging on (device writes marked in
 *                       a bitmap of exactly the RAM's pages)
 * Guest RAM is FUZZ_LOW bytes at GPA 0 and FUZZ_HIGH at GMEM_HIGH_START,
 * one malloc'd block of exactly that size, so AddressSanitizer sees any
 * access outside it.
 */
#ifndef CANOPY_TESTS_FUZZ_COMMON_H
#define CANOPY_TESTS_FUZZ_COMMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/vmm/virtq.h"

#define FUZZ_LOW (64u << 10)
#define FUZZ_HIGH (16u << 10)
#define FUZZ_HDR 16u

struct fuzz_guest {
	struct gmem m;
	struct virtq q;
	_Atomic uint64_t dirty[(FUZZ_LOW + FUZZ_HIGH) / GMEM_PAGE / 64 + 1];
};

static inline uint16_t fuzz_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Build guest RAM and the queue from the input; 0, or -1 when the input is
 * too short to say anything (RAM is then not allocated). */
static inline int fuzz_guest_init(struct fuzz_guest *g, const uint8_t *data,
				  size_t size)
{
	uint64_t gpa[3];
	size_t n;

	if (size < FUZZ_HDR)
		return -1;
	memset(g, 0, sizeof(*g));
	g->m.ram_size = FUZZ_LOW + FUZZ_HIGH;
	g->m.low_size = FUZZ_LOW;
	g->m.ram = calloc(1, g->m.ram_size);
	if (!g->m.ram)
		abort();
	n = size - FUZZ_HDR < g->m.ram_size ? size - FUZZ_HDR : g->m.ram_size;
	memcpy(g->m.ram, data + FUZZ_HDR, n);
	for (unsigned k = 0; k < 3; k++) {
		gpa[k] = fuzz_u16(data + 4 + 2 * k);
		if (data[3] & (1u << k))
			gpa[k] += GMEM_HIGH_START;
	}
	if (data[15] & 1) {
		g->m.dirty = g->dirty;
		atomic_store(&g->m.logging, 1);
	}
	g->q = (struct virtq){
		.mem = &g->m,
		.size = fuzz_u16(data),
		.desc_gpa = gpa[0],
		.avail_gpa = gpa[1],
		.used_gpa = gpa[2],
		.indirect = data[2] & 1,
		.event_idx = (data[2] >> 1) & 1,
		.last_avail = fuzz_u16(data + 10),
		.used_idx = fuzz_u16(data + 12),
	};
	return 0;
}

/* Is [p, p + len) inside guest RAM? */
static inline int fuzz_inside(const struct fuzz_guest *g, const void *p,
			      size_t len)
{
	const uint8_t *b = p, *end = g->m.ram + g->m.ram_size;

	return b >= g->m.ram && b <= end && len <= (size_t)(end - b);
}

#endif
