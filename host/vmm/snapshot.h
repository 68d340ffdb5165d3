/*
 * Snapshot file layout and the state savers shared by snapshots and live
 * migration. All integers little endian (the host's; x86 only).
 *
 *   struct snap_hdr
 *   repeated: struct snap_sec + len bytes of body
 *   a last section named "end" with len 0
 *
 * Sections: "cpu.N" (vcpu_state_save), "kvm" (irqchip, PIT, clock),
 * "dev.NAME" (each device's save op), "memory" (snap_mem_save).
 */
#ifndef CANOPY_VMM_SNAPSHOT_H
#define CANOPY_VMM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/compiler.h"

#define SNAP_MAGIC "CNPYSNAP"
#define SNAP_VERSION 1
#define SNAP_NAME_LEN 24
/* Largest non-memory section accepted on restore. */
#define SNAP_MAX_STATE (16u << 20)

struct snap_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_size;
	uint64_t mem_bytes;
	uint32_t cpus;
	uint32_t flags;
	uint64_t created_ms; /* wall clock, informational */
	uint32_t reserved;
	uint32_t hdr_crc; /* CRC-32C of the bytes before this field */
};

struct snap_sec {
	char name[SNAP_NAME_LEN]; /* NUL-terminated */
	uint64_t len;
	uint32_t crc; /* CRC-32C of the body */
	uint32_t reserved;
};

struct vm;
struct vcpu;

/* vcpu_state.c: registers, sregs, XSAVE, XCRs, MSRs, LAPIC, events, MP
 * state, debug registers of a vCPU outside KVM_RUN. */
CN_MUST_CHECK int vcpu_state_save(struct vcpu *c, struct buf *out);
CN_MUST_CHECK int vcpu_state_load(struct vcpu *c, const uint8_t *p, size_t len);
/* PIC, IOAPIC, PIT and kvmclock. */
CN_MUST_CHECK int vm_kvm_state_save(struct vm *vm, struct buf *out);
CN_MUST_CHECK int vm_kvm_state_load(struct vm *vm, const uint8_t *p,
				    size_t len);

/* Apply one saved non-memory section ("cpu.N", "kvm", "dev.NAME") to vm:
 * shared by snapshot restore and the migration receiver. -ENOENT for a
 * name no part of vm knows. */
CN_MUST_CHECK int snap_section_load(struct vm *vm, const char *name,
				    const uint8_t *p, size_t len);

/* snap_mem.c: the "memory" section: page count, a bitmap of the pages that
 * are stored (all-zero pages are not), then those pages in order. */
CN_MUST_CHECK int snap_mem_save(struct vm *vm, int fd, off_t *off);
CN_MUST_CHECK int snap_mem_load(struct vm *vm, int fd, off_t off,
				const struct snap_sec *s);

#endif
