/* Unit tests for vmotion/orch: every admission refusal, the stage machine,
 * cancellation windows and progress text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmotion/orch.h"
#include "vmotion/stream.h"

static const char *const dst_ds[] = { "ds1", "ds2" };

static struct vmo_admit good(void)
{
	struct vmo_admit a = {
		.vm = "web1",
		.vm_running = 1,
		.datastores = { "ds1" },
		.n_datastores = 1,
		.vm_memory_mib = 256,
		.src = "h1",
		.src_connected = 1,
		.dst = "h2",
		.dst_valid_name = 1,
		.dst_known = 1,
		.dst_connected = 1,
		.dst_free_mib = 1024,
		.dst_datastores = dst_ds,
		.n_dst_datastores = 2,
	};

	return a;
}

static void expect(const struct vmo_admit *a, enum cn_code code,
		   const char *words)
{
	char why[512];

	assert_int_equal(vmo_admit_check(a, why, sizeof(why)), code);
	assert_non_null(strstr(why, words));
}

static void test_admit_ok(void **s)
{
	struct vmo_admit a = good();
	char why[64] = "x";

	(void)s;
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
	assert_string_equal(why, "");
	a.src_active = VMO_HOST_LIMIT_DEFAULT - 1; /* one more still fits */
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
}

static void test_admit_refusals(void **s)
{
	struct vmo_admit a;

	(void)s;
	a = good(), a.max_downtime_ms = VMO_MAX_DOWNTIME_MS_MAX + 1;
	expect(&a, CN_INVALID_ARGUMENT, "max downtime");
	a = good(), a.dst_valid_name = 0, a.dst = "BAD!";
	expect(&a, CN_INVALID_ARGUMENT, "not a host id");
	a = good(), a.vm_running = 0;
	expect(&a, CN_FAILED_PRECONDITION, "is not running");
	a = good(), a.vm_busy = 1;
	expect(&a, CN_FAILED_PRECONDITION, "another task");
	a = good(), a.dst = "h1";
	expect(&a, CN_INVALID_ARGUMENT, "already runs on host h1");
	a = good(), a.dst_known = 0;
	expect(&a, CN_NOT_FOUND, "host h2 is not known");
	a = good(), a.dst_connected = 0;
	expect(&a, CN_UNAVAILABLE, "host h2 is disconnected");
	a = good(), a.dst_maintenance = 1;
	expect(&a, CN_FAILED_PRECONDITION, "exit-maintenance h2");
	a = good(), a.src_connected = 0;
	expect(&a, CN_UNAVAILABLE, "host h1, where vm web1 runs");
	a = good(), a.n_local_disks = 1;
	expect(&a, CN_FAILED_PRECONDITION, "not on a datastore");
	a = good(), a.datastores[0] = "ds9";
	expect(&a, CN_FAILED_PRECONDITION, "does not see datastore ds9");
	a = good(), a.dst_free_mib = 255;
	expect(&a, CN_RESOURCE_EXHAUSTED, "255 MiB free");
	a = good(), a.dst_active = VMO_HOST_LIMIT_DEFAULT;
	expect(&a, CN_RESOURCE_EXHAUSTED, "host h2 already runs 4");
	a = good(), a.src_active = 2, a.host_limit = 2;
	expect(&a, CN_RESOURCE_EXHAUSTED, "(limit 2)");
}

/* The source host's CPU feature registers must all be in the
 * destination's: one bit short refuses, naming the register; bits
 * canopy-vmm sets itself and hosts that reported nothing do not. */
static void test_admit_cpu(void **s)
{
	const uint32_t src[MIG_CPU_FEATS] = { 0x7ed8320b, 0x178bfbff,
					      0x219c91a9, 0x00400004,
					      0x10,	  0xf,
					      0x5f3,	  0x2fd3fbff };
	uint32_t dst[MIG_CPU_FEATS];
	struct vmo_admit a = good();
	char why[512];

	(void)s;
	memcpy(dst, src, sizeof(dst));
	a.src_cpu = src, a.n_src_cpu = MIG_CPU_FEATS;
	a.dst_cpu = dst, a.n_dst_cpu = MIG_CPU_FEATS;
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
	dst[6] &= ~0x1u; /* 0x80000001.ecx LAHF/SAHF */
	expect(&a, CN_FAILED_PRECONDITION,
	       "host h2's CPU lacks features vm web1 may use on host h1 "
	       "(CPUID 0x80000001.ecx bits 0x00000001)");
	dst[2] &= ~0x20u; /* 7.0.ebx AVX2 too: the first register named */
	expect(&a, CN_FAILED_PRECONDITION, "CPUID 7.0.ebx bits 0x00000020");
	memcpy(dst, src, sizeof(dst));
	dst[0] &= ~(1u << 31); /* 1.ecx hypervisor: canopy-vmm sets it */
	dst[6] &= ~(1u << 2); /* 0x80000001.ecx SVM: canopy-vmm clears it */
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
	memset(dst, 0, sizeof(dst));
	a.n_dst_cpu = 0; /* not reported: left to the receiver */
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
	a.n_dst_cpu = MIG_CPU_FEATS, a.n_src_cpu = 0;
	assert_int_equal(vmo_admit_check(&a, why, sizeof(why)), CN_OK);
	/* Before memory: the first failed check is the one named. */
	a = good(), a.dst_free_mib = 0;
	a.src_cpu = src, a.n_src_cpu = MIG_CPU_FEATS;
	a.dst_cpu = dst, a.n_dst_cpu = MIG_CPU_FEATS;
	expect(&a, CN_FAILED_PRECONDITION, "CPU lacks features");
}

static void test_stages(void **s)
{
	enum vmo_stage st = VMO_QUEUED;

	(void)s;
	assert_int_equal(vmo_stage_next(st, VMO_EV_START, &st), 0);
	assert_int_equal(st, VMO_PREPARING);
	assert_int_equal(vmo_stage_next(st, VMO_EV_DONE_OK, &st), -EINVAL);
	assert_int_equal(vmo_stage_next(st, VMO_EV_READY, &st), 0);
	assert_int_equal(st, VMO_SENDING);
	assert_int_equal(vmo_stage_next(st, VMO_EV_DONE_OK, &st), 0);
	assert_int_equal(st, VMO_COMMITTING);
	/* after commit nothing but the record: no cancel, no failure */
	assert_int_equal(vmo_stage_next(st, VMO_EV_CANCEL, &st), -EINVAL);
	assert_int_equal(vmo_stage_next(st, VMO_EV_FAIL, &st), -EINVAL);
	assert_int_equal(vmo_stage_next(st, VMO_EV_STORED, &st), 0);
	assert_int_equal(st, VMO_DONE);
	assert_int_equal(vmo_stage_next(st, VMO_EV_FAIL, &st), -EINVAL);
	st = VMO_SENDING;
	assert_int_equal(vmo_stage_next(st, VMO_EV_FAIL, &st), 0);
	assert_int_equal(st, VMO_FAILED);
	assert_int_equal(vmo_stage_next(VMO_STAGE_COUNT, VMO_EV_START, &st),
			 -EINVAL);
	assert_int_equal(vmo_stage_next(VMO_QUEUED, VMO_EV_COUNT, &st),
			 -EINVAL);
	assert_string_equal(vmo_stage_name(VMO_COMMITTING), "committing");
	assert_string_equal(vmo_stage_name(VMO_STAGE_COUNT), "?");
}

static void test_cancel_window(void **s)
{
	(void)s;
	assert_true(vmo_cancel_ok(VMO_PREPARING, NULL));
	assert_true(vmo_cancel_ok(VMO_SENDING, ""));
	assert_true(vmo_cancel_ok(VMO_SENDING, "precopy"));
	assert_false(vmo_cancel_ok(VMO_SENDING, "stop-and-copy"));
	assert_false(vmo_cancel_ok(VMO_SENDING, "commit"));
	assert_false(vmo_cancel_ok(VMO_COMMITTING, "precopy"));
	assert_false(vmo_cancel_ok(VMO_DONE, NULL));
}

static void test_progress(void **s)
{
	struct vmo_progress p = { .phase = "precopy",
				  .round = 1,
				  .transferred_mib = 128 };
	char buf[200];

	(void)s;
	assert_int_equal(vmo_progress_pct(&p, 256), 45);
	p.transferred_mib = 4096; /* more than RAM: capped */
	assert_int_equal(vmo_progress_pct(&p, 256), 80);
	assert_int_equal(vmo_progress_pct(&p, 0), 10);
	p.round = 4;
	assert_int_equal(vmo_progress_pct(&p, 256), 83);
	p.round = 400;
	assert_int_equal(vmo_progress_pct(&p, 256), 90);
	p.phase = "stop-and-copy";
	assert_int_equal(vmo_progress_pct(&p, 256), 92);
	p.phase = "commit";
	assert_int_equal(vmo_progress_pct(&p, 256), 95);
	p.phase = NULL;
	assert_int_equal(vmo_progress_pct(&p, 256), 10);
	vmo_progress_text(&p, buf, sizeof(buf));
	assert_string_equal(buf, "connecting");
	p = (struct vmo_progress){ .phase = "precopy",
				   .round = 3,
				   .remaining_mib = 12,
				   .dirty_rate_mib_s = 40,
				   .expected_downtime_ms = 20,
				   .throttle_pct = 40 };
	vmo_progress_text(&p, buf, sizeof(buf));
	assert_string_equal(buf, "precopy round 3: 12 MiB remaining, dirty "
				 "40 MiB/s, expected downtime 20 ms, vCPU "
				 "throttle 40%");
	vmo_progress_text(&p, buf, 10); /* truncated, terminated */
	assert_int_equal(strlen(buf), 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admit_ok),
		cmocka_unit_test(test_admit_refusals),
		cmocka_unit_test(test_admit_cpu),
		cmocka_unit_test(test_stages),
		cmocka_unit_test(test_cancel_window),
		cmocka_unit_test(test_progress),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
