/*
 * The vMotion stream (docs/migration-protocol.md): the records a source
 * canopy-vmm and a destination canopy-vmm exchange over one TCP connection.
 * Pure encode and decode: no I/O, no VM. All integers little endian.
 *
 * Every record is an 8-byte head {u32 type, u32 len} and len bytes of body.
 * Source -> destination: HEADER, then PAGES / ROUND_END records, STATE
 * records, END (CRC-32C of every byte before it), COMMIT. Destination ->
 * source: HEADER_REPLY, ACK, STARTED.
 *
 * Every decoder validates fully and returns 0 or a negative errno:
 * -EPROTO for an unknown record type or a bad magic, -EPROTONOSUPPORT for
 * another version, -EMSGSIZE for a length over the type's limit, -EINVAL
 * for a malformed body, -ERANGE for a page past the end of RAM. Any
 * thread; the functions keep no state.
 */
#ifndef CANOPY_VMOTION_STREAM_H
#define CANOPY_VMOTION_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/compiler.h"

#define MIG_MAGIC "CNPYMIG1" /* first 8 bytes of the HEADER body */
#define MIG_VERSION 1
#define MIG_PAGE_SIZE 4096u
#define MIG_REC_HEAD 8u /* {type, len} */
/* A PAGES record carries at most this many pages (1 MiB of data). */
#define MIG_MAX_RUN 256u
/* Largest STATE body (as snapshot sections) and largest HEADER body. */
#define MIG_MAX_STATE (16u << 20)
#define MIG_MAX_HEADER (64u << 10)
/* Names of state sections ("cpu.0", "kvm", "dev.NAME"), with the NUL. */
#define MIG_NAME_LEN 24u
/* CPUID leaves a header may carry, and the device list's length. */
#define MIG_MAX_CPUID 256u
#define MIG_MAX_DEVICES 512u
/* Reasons in HEADER_REPLY and ACK. */
#define MIG_MAX_REASON 256u

enum mig_rec_type {
	MIG_REC_HEADER = 1,
	MIG_REC_HEADER_REPLY = 2,
	MIG_REC_PAGES = 3,
	MIG_REC_ROUND_END = 4,
	MIG_REC_STATE = 5,
	MIG_REC_END = 6,
	MIG_REC_ACK = 7,
	MIG_REC_COMMIT = 8,
	MIG_REC_STARTED = 9,
};

/* One CPUID leaf the source shows its guest. */
struct mig_cpuid {
	uint32_t function, index, eax, ebx, ecx, edx;
};

/* What must match between the two VMs. The strings point into the decoded
 * buffer (decode) or the caller's memory (encode). */
struct mig_header {
	uint32_t version;
	uint32_t page_size;
	uint64_t mem_bytes;
	uint32_t cpus;
	uint32_t ncpuid;
	const char *devices; /* device sections, comma separated */
	struct mig_cpuid cpuid[MIG_MAX_CPUID];
};

/* A run of count pages from page first: data (count * 4 KiB) or zero. */
struct mig_pages {
	uint64_t first;
	uint32_t count;
	int zero;
	const uint8_t *data; /* NULL for a zero run */
};

struct mig_round {
	uint32_t round;
	uint64_t pages; /* pages sent in the round (zero ones included) */
	uint64_t zero_pages;
	uint64_t bytes; /* stream bytes of the round */
	uint64_t duration_us;
	uint64_t dirty_pages; /* dirty when the round ended */
};

/* HEADER_REPLY and ACK: ok, or why not. */
struct mig_verdict {
	int ok;
	char reason[MIG_MAX_REASON];
};

/* A record as decoded by mig_rec_decode: its type and body. */
struct mig_rec {
	uint32_t type;
	uint32_t len;
	const uint8_t *body;
};

/* Largest body a record of this type may have; 0 for an unknown type. */
uint32_t mig_rec_max(uint32_t type);
/* Decode the head at p (n bytes available, n >= MIG_REC_HEAD): type and
 * length checked against mig_rec_max. body is set to p + MIG_REC_HEAD. */
CN_MUST_CHECK int mig_rec_head_decode(const uint8_t *p, size_t n,
				      struct mig_rec *out);
/* Append a head for a body of len bytes. */
CN_MUST_CHECK int mig_rec_head_put(struct buf *b, uint32_t type, uint32_t len);

CN_MUST_CHECK int mig_header_encode(struct buf *b, const struct mig_header *h);
CN_MUST_CHECK int mig_header_decode(const struct mig_rec *r,
				    struct mig_header *h);
/*
 * The CPU feature registers compared between hosts, in this order: leaf 1
 * ECX and EDX, 7.0 EBX, ECX and EDX, 0xD.1 EAX, 0x80000001 ECX and EDX, each
 * without the bits canopy-vmm sets or clears itself (hypervisor, HTT, VMX,
 * SMX, SVM, OSXSAVE). The receiver compares them from the HEADER; agents
 * report them (AgentRegister.cpu_features) so that the manager compares
 * the same registers before a migration starts.
 */
#define MIG_CPU_FEATS 8u
/* The registers of a CPUID set (a leaf it lacks gives 0). */
void mig_cpu_features(const struct mig_cpuid *set, unsigned n,
		      uint32_t out[MIG_CPU_FEATS]);
/* 0 when have holds every bit of need; -EINVAL with the first register
 * short and its missing bits in why ("CPUID 7.0.ebx bits 0x00000020"). */
CN_MUST_CHECK int mig_cpu_features_missing(const uint32_t need[MIG_CPU_FEATS],
					   const uint32_t have[MIG_CPU_FEATS],
					   char *why, size_t whylen);
/* KVM_GET_SUPPORTED_CPUID on kvm_fd, or on /dev/kvm opened for the call
 * when kvm_fd < 0, into set (at most max leaves; *n set). The one part of
 * vmotion/ that does I/O: canopy-vmm and canopy-agent share it. */
CN_MUST_CHECK int mig_kvm_cpuid(int kvm_fd, struct mig_cpuid *set, unsigned max,
				unsigned *n);

/* Can a VM shaped as local (its supported CPUID set in sup, nsup) take
 * this stream? 0, or -EINVAL with the reason in why. */
CN_MUST_CHECK int mig_header_check(const struct mig_header *src,
				   const struct mig_header *local,
				   const struct mig_cpuid *sup, unsigned nsup,
				   char *why, size_t whylen);

/* PAGES: the head and the run's fixed part (data follows for a data run,
 * appended by the caller: count * MIG_PAGE_SIZE bytes). */
CN_MUST_CHECK int mig_pages_put(struct buf *b, uint64_t first, uint32_t count,
				int zero);
CN_MUST_CHECK int mig_pages_decode(const struct mig_rec *r, uint64_t ram_pages,
				   struct mig_pages *out);

CN_MUST_CHECK int mig_round_encode(struct buf *b, const struct mig_round *rd);
CN_MUST_CHECK int mig_round_decode(const struct mig_rec *r,
				   struct mig_round *out);

/* STATE: a name and a body (a snapshot section's contents). */
CN_MUST_CHECK int mig_state_put(struct buf *b, const char *name,
				uint32_t body_len);
CN_MUST_CHECK int mig_state_decode(const struct mig_rec *r, const char **name,
				   const uint8_t **body, uint32_t *len);

/* END: the CRC-32C of every stream byte before the END record. */
CN_MUST_CHECK int mig_end_encode(struct buf *b, uint32_t crc, uint64_t bytes);
CN_MUST_CHECK int mig_end_decode(const struct mig_rec *r, uint32_t *crc,
				 uint64_t *bytes);
/* Decode END and compare with what the receiver counted itself (crc,
 * bytes): 0, -EINVAL for a malformed END, -EBADMSG on a mismatch. */
CN_MUST_CHECK int mig_end_verify(const struct mig_rec *r, uint32_t crc,
				 uint64_t bytes);

/* HEADER_REPLY / ACK (type says which). */
CN_MUST_CHECK int mig_verdict_encode(struct buf *b, uint32_t type, int ok,
				     const char *reason);
CN_MUST_CHECK int mig_verdict_decode(const struct mig_rec *r,
				     struct mig_verdict *out);

/* COMMIT (empty) and STARTED (the destination's time from END to its
 * vCPUs running, in us). */
CN_MUST_CHECK int mig_commit_encode(struct buf *b);
CN_MUST_CHECK int mig_started_encode(struct buf *b, uint64_t resume_us);
CN_MUST_CHECK int mig_started_decode(const struct mig_rec *r,
				     uint64_t *resume_us);

/* A whole record at p (n bytes): head, then the body decoded by its type's
 * decoder; *used = head + body. -EAGAIN when n holds less than a whole
 * record. For the fuzzer and the tests: the checks the receiver makes. */
CN_MUST_CHECK int mig_rec_check(const uint8_t *p, size_t n, uint64_t ram_pages,
				size_t *used);

const char *mig_rec_name(uint32_t type);

#endif
