/* Unit tests for vmotion/stream: round trips and every hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/crc32c.h"
#include "vmotion/stream.h"

#define RAM_PAGES 1024u /* 4 MiB of guest RAM in these tests */

static struct mig_header src_hdr(void)
{
	struct mig_header h = {
		.version = MIG_VERSION,
		.page_size = MIG_PAGE_SIZE,
		.mem_bytes = 64ull << 20,
		.cpus = 2,
		.ncpuid = 2,
		.devices = "platform,serial0,virtio-blk0",
	};

	h.cpuid[0] = (struct mig_cpuid){ .function = 1,
					 .ecx = 0x80000201u,
					 .edx = 0x10000001u };
	h.cpuid[1] = (struct mig_cpuid){ .function = 7, .ebx = 0x9 };
	return h;
}

/* Decode the single record in b (head and body). */
static int rec_of(struct buf *b, struct mig_rec *r)
{
	int rc =
		mig_rec_head_decode((const uint8_t *)buf_ptr(b), buf_len(b), r);

	if (rc == 0)
		assert_int_equal(buf_len(b), MIG_REC_HEAD + r->len);
	return rc;
}

/* The registers agents report: in order, without canopy-vmm's own bits,
 * 0 for a leaf the set lacks; the first short register is named. */
static void test_cpu_features(void **state)
{
	const struct mig_cpuid set[] = {
		{ .function = 0x80000001u, .ecx = 0x5f7, .edx = 0x2fd3fbff },
		{ .function = 1, .ecx = 0xfed8322bu, .edx = 0x178bfbff },
		{ .function = 7, .index = 1, .ebx = 0xdead }, /* not compared */
		{ .function = 7, .ebx = 0x219c91a9 },
	};
	uint32_t f[MIG_CPU_FEATS], have[MIG_CPU_FEATS];
	char why[64];

	(void)state;
	mig_cpu_features(set, 4, f);
	/* 1.ecx without hypervisor (31), OSXSAVE (27), VMX (5) */
	assert_int_equal(f[0], 0x76d8320bu);
	assert_int_equal(f[1], 0x178bfbffu & ~(1u << 28)); /* HTT */
	assert_int_equal(f[2], 0x219c91a9u);
	assert_int_equal(f[3], 0);
	assert_int_equal(f[5], 0); /* leaf 0xd absent */
	assert_int_equal(f[6], 0x5f3u); /* SVM */
	assert_int_equal(f[7], 0x2fd3fbffu);
	memcpy(have, f, sizeof(have));
	assert_int_equal(mig_cpu_features_missing(f, have, why, sizeof(why)),
			 0);
	have[7] &= ~0x800u, have[2] = 0;
	assert_int_equal(mig_cpu_features_missing(f, have, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "CPUID 7.0.ebx bits 0x219c91a9");
	have[2] = f[2];
	assert_int_equal(mig_cpu_features_missing(f, have, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "CPUID 0x80000001.edx bits 0x00000800");
}

static void test_header_round_trip_and_check(void **state)
{
	struct mig_header h = src_hdr(), local = src_hdr();
	static struct mig_header got;
	struct mig_cpuid sup[2] = {
		{ .function = 1, .ecx = 0x00000201u, .edx = 0x00000001u },
		{ .function = 7, .ebx = 0xff },
	};
	struct mig_rec r;
	struct buf b;
	char why[256];

	buf_init(&b, 0);
	assert_int_equal(mig_header_encode(&b, &h), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_header_decode(&r, &got), 0);
	assert_int_equal(got.mem_bytes, h.mem_bytes);
	assert_int_equal(got.cpus, 2);
	assert_int_equal(got.ncpuid, 2);
	assert_int_equal(got.cpuid[1].ebx, 0x9);
	assert_string_equal(got.devices, h.devices);
	/* Hypervisor and HTT bits are ours: not required of the host. */
	assert_int_equal(
		mig_header_check(&got, &local, sup, 2, why, sizeof(why)), 0);
	/* A feature the destination lacks. */
	sup[1].ebx = 0x1;
	assert_int_equal(mig_header_check(&got, &local, sup, 2, why,
					  sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "CPUID 7.0.ebx bits 0x00000008"));
	sup[1].ebx = 0xff;
	local.mem_bytes = 128ull << 20;
	assert_int_equal(mig_header_check(&got, &local, sup, 2, why,
					  sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "memory size differs: the VM has 64 MiB"));
	local = src_hdr();
	local.cpus = 4;
	assert_int_equal(mig_header_check(&got, &local, sup, 2, why,
					  sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "vCPU count differs"));
	local = src_hdr();
	local.devices = "platform,serial0";
	assert_int_equal(mig_header_check(&got, &local, sup, 2, why,
					  sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "devices differ"));
	buf_free(&b);
}

static void test_header_hostile(void **state)
{
	struct mig_header h = src_hdr();
	static struct mig_header got;
	struct mig_rec r;
	struct buf b;
	uint8_t *p;

	buf_init(&b, 0);
	assert_int_equal(mig_header_encode(&b, &h), 0);
	p = (uint8_t *)buf_ptr(&b);
	assert_int_equal(rec_of(&b, &r), 0);
	/* Bad magic. */
	p[MIG_REC_HEAD] ^= 1;
	assert_int_equal(mig_header_decode(&r, &got), -EPROTO);
	p[MIG_REC_HEAD] ^= 1;
	/* Another version. */
	p[MIG_REC_HEAD + 8] = 2;
	assert_int_equal(mig_header_decode(&r, &got), -EPROTONOSUPPORT);
	p[MIG_REC_HEAD + 8] = 1;
	/* Device list without its NUL. */
	p[buf_len(&b) - 1] = 'x';
	assert_int_equal(mig_header_decode(&r, &got), -EINVAL);
	p[buf_len(&b) - 1] = 0;
	/* A cpuid count that does not fit the length. */
	p[MIG_REC_HEAD + 28] = 3;
	assert_int_equal(mig_header_decode(&r, &got), -EINVAL);
	p[MIG_REC_HEAD + 28] = 0xff;
	p[MIG_REC_HEAD + 29] = 0xff;
	assert_int_equal(mig_header_decode(&r, &got), -EINVAL);
	p[MIG_REC_HEAD + 28] = 2;
	p[MIG_REC_HEAD + 29] = 0;
	/* Truncated: shorter than its fixed part. */
	r.len = 20;
	assert_int_equal(mig_header_decode(&r, &got), -EINVAL);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_header_decode(&r, &got), 0);
	buf_free(&b);
}

static void test_heads(void **state)
{
	uint8_t h[MIG_REC_HEAD] = { 0 };
	struct mig_rec r;

	/* Unknown types. */
	assert_int_equal(mig_rec_head_decode(h, sizeof(h), &r), -EPROTO);
	h[0] = 10;
	assert_int_equal(mig_rec_head_decode(h, sizeof(h), &r), -EPROTO);
	/* Oversized lengths, per type. */
	h[0] = MIG_REC_PAGES;
	h[4] = 0xff, h[5] = 0xff, h[6] = 0xff, h[7] = 0xff;
	assert_int_equal(mig_rec_head_decode(h, sizeof(h), &r), -EMSGSIZE);
	h[0] = MIG_REC_COMMIT;
	h[4] = 1, h[5] = 0, h[6] = 0, h[7] = 0;
	assert_int_equal(mig_rec_head_decode(h, sizeof(h), &r), -EMSGSIZE);
	h[4] = 0;
	assert_int_equal(mig_rec_head_decode(h, sizeof(h), &r), 0);
	assert_int_equal(r.type, MIG_REC_COMMIT);
	/* Truncated head. */
	assert_int_equal(mig_rec_head_decode(h, 7, &r), -EAGAIN);
	assert_string_equal(mig_rec_name(MIG_REC_END), "end");
	assert_string_equal(mig_rec_name(77), "unknown");
}

static void test_pages(void **state)
{
	struct mig_pages pg;
	struct mig_rec r;
	struct buf b;
	uint8_t *page = calloc(2, MIG_PAGE_SIZE);

	assert_non_null(page);
	buf_init(&b, 0);
	assert_int_equal(mig_pages_put(&b, 5, 2, 0), 0);
	page[0] = 0xab;
	assert_int_equal(buf_append(&b, page, 2 * MIG_PAGE_SIZE), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), 0);
	assert_int_equal(pg.first, 5);
	assert_int_equal(pg.count, 2);
	assert_false(pg.zero);
	assert_int_equal(pg.data[0], 0xab);
	/* Page number past RAM, and a run that ends past it. */
	assert_int_equal(mig_pages_decode(&r, 6, &pg), -ERANGE);
	assert_int_equal(mig_pages_decode(&r, 5, &pg), -ERANGE);
	assert_int_equal(mig_pages_decode(&r, 7, &pg), 0);
	/* Data shorter than the count says (truncated). */
	r.len -= 1;
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), -EINVAL);
	buf_reset(&b);
	/* A zero run has no data; a first page near 2^64 does not wrap. */
	assert_int_equal(mig_pages_put(&b, ~0ull - 1, 4, 1), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), -ERANGE);
	buf_reset(&b);
	assert_int_equal(mig_pages_put(&b, RAM_PAGES - 4, 4, 1), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), 0);
	assert_true(pg.zero);
	assert_null(pg.data);
	/* Unknown flags, zero count. */
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 12] |= 2;
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), -EINVAL);
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 12] = 1;
	memset(buf_ptr(&b) + MIG_REC_HEAD + 8, 0, 4);
	assert_int_equal(mig_pages_decode(&r, RAM_PAGES, &pg), -EINVAL);
	assert_int_equal(mig_pages_put(&b, 0, MIG_MAX_RUN + 1, 1), -EINVAL);
	assert_int_equal(mig_pages_put(&b, 0, 0, 1), -EINVAL);
	buf_free(&b);
	free(page);
}

static void test_round_state_end(void **state)
{
	struct mig_round rd = { .round = 3,
				.pages = 100,
				.zero_pages = 40,
				.bytes = 250000,
				.duration_us = 777,
				.dirty_pages = 12 },
			 got;
	struct mig_rec r;
	struct buf b;
	const char *name;
	const uint8_t *body;
	uint32_t len, crc;
	uint64_t bytes;

	buf_init(&b, 0);
	assert_int_equal(mig_round_encode(&b, &rd), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_round_decode(&r, &got), 0);
	assert_int_equal(got.round, 3);
	assert_int_equal(got.pages, 100);
	assert_int_equal(got.zero_pages, 40);
	assert_int_equal(got.bytes, 250000);
	assert_int_equal(got.duration_us, 777);
	assert_int_equal(got.dirty_pages, 12);
	/* More zero pages than pages. */
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 16] = 101;
	assert_int_equal(mig_round_decode(&r, &got), -EINVAL);
	buf_reset(&b);

	assert_int_equal(mig_state_put(&b, "dev.serial0", 3), 0);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_state_decode(&r, &name, &body, &len), 0);
	assert_string_equal(name, "dev.serial0");
	assert_int_equal(len, 3);
	assert_memory_equal(body, "abc", 3);
	/* Garbage after the name's NUL; a name without NUL; empty name. */
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 20] = 'x';
	assert_int_equal(mig_state_decode(&r, &name, &body, &len), -EINVAL);
	memset(buf_ptr(&b) + MIG_REC_HEAD, 'x', MIG_NAME_LEN);
	assert_int_equal(mig_state_decode(&r, &name, &body, &len), -EINVAL);
	memset(buf_ptr(&b) + MIG_REC_HEAD, 0, MIG_NAME_LEN);
	assert_int_equal(mig_state_decode(&r, &name, &body, &len), -EINVAL);
	assert_int_equal(mig_state_put(&b, "a-name-of-twenty-four-ch", 0),
			 -EINVAL);
	buf_reset(&b);

	assert_int_equal(mig_end_encode(&b, 0xdeadbeef, 12345), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_end_decode(&r, &crc, &bytes), 0);
	assert_int_equal(crc, 0xdeadbeef);
	assert_int_equal(bytes, 12345);
	r.len = 8;
	assert_int_equal(mig_end_decode(&r, &crc, &bytes), -EINVAL);
	buf_free(&b);
}

/* The receiver's checksum check: CRC-32C over every byte before END. */
static void test_end_checksum(void **state)
{
	struct mig_rec r;
	struct buf s, e;
	uint32_t crc;
	size_t n;

	buf_init(&s, 0);
	buf_init(&e, 0);
	assert_int_equal(mig_pages_put(&s, 0, 8, 1), 0);
	assert_int_equal(mig_state_put(&s, "kvm", 4), 0);
	assert_int_equal(buf_append(&s, "abcd", 4), 0);
	n = buf_len(&s);
	crc = crc32c(0, buf_ptr(&s), n);
	assert_int_equal(mig_end_encode(&e, crc, n), 0);
	assert_int_equal(rec_of(&e, &r), 0);
	assert_int_equal(mig_end_verify(&r, crc, n), 0);
	/* One bit flipped anywhere in the stream changes the CRC. */
	for (size_t i = 0; i < n; i++) {
		((uint8_t *)buf_ptr(&s))[i] ^= 0x10;
		assert_int_equal(mig_end_verify(&r, crc32c(0, buf_ptr(&s), n),
						n),
				 -EBADMSG);
		((uint8_t *)buf_ptr(&s))[i] ^= 0x10;
	}
	/* A truncated stream: fewer bytes than the source sent. */
	assert_int_equal(mig_end_verify(&r, crc32c(0, buf_ptr(&s), n - 1),
					n - 1),
			 -EBADMSG);
	r.len = 4;
	assert_int_equal(mig_end_verify(&r, crc, n), -EINVAL);
	buf_free(&s);
	buf_free(&e);
}

static void test_verdicts(void **state)
{
	struct mig_verdict v;
	struct mig_rec r;
	struct buf b;
	uint64_t us;

	buf_init(&b, 0);
	assert_int_equal(mig_verdict_encode(&b, MIG_REC_HEADER_REPLY, 0,
					    "memory size differs\n"),
			 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_verdict_decode(&r, &v), 0);
	assert_false(v.ok);
	/* Control bytes never reach a log. */
	assert_string_equal(v.reason, "memory size differs?");
	/* A reason length past the record. */
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 4] = 200;
	assert_int_equal(mig_verdict_decode(&r, &v), -EINVAL);
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD + 4] = 20;
	((uint8_t *)buf_ptr(&b))[MIG_REC_HEAD] = 2;
	assert_int_equal(mig_verdict_decode(&r, &v), -EINVAL);
	assert_int_equal(mig_verdict_encode(&b, MIG_REC_END, 1, ""), -EINVAL);
	buf_reset(&b);
	assert_int_equal(mig_verdict_encode(&b, MIG_REC_ACK, 1, NULL), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_verdict_decode(&r, &v), 0);
	assert_true(v.ok);
	assert_string_equal(v.reason, "");
	buf_reset(&b);
	assert_int_equal(mig_started_encode(&b, 4242), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(mig_started_decode(&r, &us), 0);
	assert_int_equal(us, 4242);
	buf_reset(&b);
	assert_int_equal(mig_commit_encode(&b), 0);
	assert_int_equal(rec_of(&b, &r), 0);
	assert_int_equal(r.type, MIG_REC_COMMIT);
	assert_int_equal(mig_started_decode(&r, &us), -EINVAL);
	buf_free(&b);
}

static void test_rec_check_walks_a_stream(void **state)
{
	struct mig_header h = src_hdr();
	struct mig_round rd = { .round = 1, .pages = 4 };
	struct buf b;
	size_t off = 0, used = 0;
	unsigned n = 0;
	int rc;

	buf_init(&b, 0);
	assert_int_equal(mig_header_encode(&b, &h), 0);
	assert_int_equal(mig_pages_put(&b, 0, 4, 1), 0);
	assert_int_equal(mig_round_encode(&b, &rd), 0);
	assert_int_equal(mig_end_encode(&b, 1, 2), 0);
	while (off < buf_len(&b)) {
		rc = mig_rec_check((const uint8_t *)buf_ptr(&b) + off,
				   buf_len(&b) - off, RAM_PAGES, &used);
		assert_int_equal(rc, 0);
		off += used;
		n++;
	}
	assert_int_equal(n, 4);
	/* Truncated anywhere: -EAGAIN, never a read past the end. */
	for (size_t cut = 0; cut < 30; cut++)
		assert_int_equal(mig_rec_check((const uint8_t *)buf_ptr(&b),
					       cut, RAM_PAGES, &used),
				 -EAGAIN);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip_and_check),
		cmocka_unit_test(test_cpu_features),
		cmocka_unit_test(test_header_hostile),
		cmocka_unit_test(test_heads),
		cmocka_unit_test(test_pages),
		cmocka_unit_test(test_round_state_end),
		cmocka_unit_test(test_end_checksum),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_rec_check_walks_a_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
