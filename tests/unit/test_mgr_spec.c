/* Unit tests for manager/spec and manager/task_state: VM spec rules, power
 * preconditions, the op table, task transitions and ids. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "manager/spec.h"
#include "manager/task_state.h"

#define PS(x) CANOPY__V1__POWER_STATE__POWER_STATE_##x
#define RS(x) CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_##x
#define TS(x) CANOPY__V1__TASK_STATE__TASK_STATE_##x

static Canopy__V1__VmSpec good(void)
{
	Canopy__V1__VmSpec s = CANOPY__V1__VM_SPEC__INIT;

	s.name = (char *)"web1";
	s.cpus = 2;
	s.memory_mib = 512;
	s.kernel = (char *)"/boot/guest.elf";
	return s;
}

/* spec must be refused with a sentence containing word. */
static void refused(const Canopy__V1__VmSpec *s, const char *word)
{
	char why[256] = "";

	assert_int_equal(mgr_spec_check(s, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, word));
}

static void test_spec_rules(void **state)
{
	Canopy__V1__VmSpec s = good();
	Canopy__V1__DiskSpec d = CANOPY__V1__DISK_SPEC__INIT, *dp = &d;
	char why[256];

	assert_int_equal(mgr_spec_check(&s, why, sizeof(why)), 0);
	refused(NULL, "spec is missing");
	s.name = (char *)"Web";
	refused(&s, "name");
	s = good();
	s.cpus = 0;
	refused(&s, "cpus 0");
	s.cpus = 65;
	refused(&s, "cpus 65");
	s.cpus = 64;
	assert_int_equal(mgr_spec_check(&s, why, sizeof(why)), 0);
	s = good();
	s.memory_mib = 15;
	refused(&s, "16..1048576");
	s.memory_mib = 1048577;
	refused(&s, "memory_mib");
	s.memory_mib = 16;
	assert_int_equal(mgr_spec_check(&s, why, sizeof(why)), 0);
	s = good();
	s.kernel = (char *)"";
	refused(&s, "kernel");
	s = good();
	d.path = (char *)"";
	s.n_disks = 1;
	s.disks = &dp;
	refused(&s, "disk 0");
	d.path = (char *)"ds1:web1/disk0";
	assert_int_equal(mgr_spec_check(&s, why, sizeof(why)), 0);
	s.n_disks = MGR_DISKS_MAX + 1;
	refused(&s, "disks");
}

static void test_preconditions(void **state)
{
	char why[128];

	assert_int_equal(mgr_op_check(MGR_OP_START, "v", PS(OFF), RS(STOPPED),
				      why, sizeof(why)),
			 CN_OK);
	assert_int_equal(mgr_op_check(MGR_OP_START, "v", PS(ON), RS(RUNNING),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
	/* Desired on, but the guest stopped by itself: start again. */
	assert_int_equal(mgr_op_check(MGR_OP_START, "v", PS(ON), RS(STOPPED),
				      why, sizeof(why)),
			 CN_OK);
	assert_int_equal(mgr_op_check(MGR_OP_START, "v", PS(OFF), RS(PAUSED),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
	assert_int_equal(mgr_op_check(MGR_OP_DELETE, "v", PS(OFF), RS(RUNNING),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
	assert_string_equal(why, "vm v is running; stop it first");
	assert_int_equal(mgr_op_check(MGR_OP_DELETE, "v", PS(OFF), RS(STOPPED),
				      why, sizeof(why)),
			 CN_OK);
	assert_int_equal(mgr_op_check(MGR_OP_STOP, "v", PS(OFF), RS(STOPPED),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
	/* A VM reported running while desired off can still be stopped. */
	assert_int_equal(mgr_op_check(MGR_OP_STOP, "v", PS(OFF), RS(RUNNING),
				      why, sizeof(why)),
			 CN_OK);
	assert_int_equal(mgr_op_check(MGR_OP_PAUSE, "v", PS(OFF), RS(STOPPED),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
	assert_int_equal(mgr_op_check(MGR_OP_RESUME, "v", PS(PAUSED),
				      RS(PAUSED), why, sizeof(why)),
			 CN_OK);
	assert_int_equal(mgr_op_check(MGR_OP_RESUME, "v", PS(ON), RS(RUNNING),
				      why, sizeof(why)),
			 CN_FAILED_PRECONDITION);
}

static void test_op_table(void **state)
{
	int op;

	for (op = 0; op < MGR_OP_COUNT; op++) {
		assert_non_null(strstr(mgr_op_kind(op), "vm."));
		if (op == MGR_OP_MIGRATE) /* no VmCommand: migrate.c */
			continue;
		assert_int_not_equal(
			mgr_op_action(op, 0),
			CANOPY__V1__VM_ACTION__VM_ACTION_UNSPECIFIED);
	}
	assert_string_equal(mgr_op_kind(MGR_OP_MIGRATE), "vm.migrate");
	assert_int_equal(mgr_op_action(MGR_OP_MIGRATE, 0),
			 CANOPY__V1__VM_ACTION__VM_ACTION_UNSPECIFIED);
	assert_string_equal(mgr_op_kind(MGR_OP_START), "vm.start");
	assert_int_equal(mgr_op_action(MGR_OP_STOP, 1),
			 CANOPY__V1__VM_ACTION__VM_ACTION_STOP_HARD);
	assert_int_equal(mgr_op_action(MGR_OP_STOP, 0),
			 CANOPY__V1__VM_ACTION__VM_ACTION_STOP);
	assert_int_equal(mgr_op_desired(MGR_OP_PAUSE), PS(PAUSED));
	assert_int_equal(mgr_op_state(MGR_OP_RESUME), RS(RUNNING));
	assert_string_equal(mgr_op_event(MGR_OP_START), "vm.powered_on");
	assert_string_equal(mgr_op_kind(MGR_OP_COUNT), "vm.unknown");
}

static void test_task_transitions(void **state)
{
	static const int all[] = { TS(UNSPECIFIED), TS(QUEUED), TS(RUNNING),
				   TS(SUCCEEDED),   TS(FAILED), TS(CANCELLED) };
	size_t i, j;
	int ok;

	for (i = 0; i < 6; i++)
		for (j = 0; j < 6; j++) {
			ok = (all[i] == TS(QUEUED) &&
			      (all[j] == TS(RUNNING) || all[j] == TS(FAILED) ||
			       all[j] == TS(CANCELLED))) ||
			     (all[i] == TS(RUNNING) &&
			      (all[j] == TS(RUNNING) ||
			       all[j] == TS(SUCCEEDED) ||
			       all[j] == TS(FAILED)));
			assert_int_equal(mgr_task_transition(all[i], all[j]),
					 ok ? 0 : -EINVAL);
		}
	assert_true(mgr_task_final(TS(CANCELLED)));
	assert_false(mgr_task_final(TS(RUNNING)));
	assert_string_equal(mgr_task_state_name(TS(QUEUED)), "queued");
	assert_string_equal(mgr_task_state_name(99), "unknown");
}

static void test_task_ids(void **state)
{
	char a[MGR_TASK_ID_LEN + 1], b[MGR_TASK_ID_LEN + 1];

	assert_int_equal(mgr_task_id_format(a, sizeof(a), 1764201600000ULL, 1),
			 0);
	assert_string_equal(a, "1764201600000-000001");
	assert_int_equal(mgr_task_id_format(b, sizeof(b), 1764201600001ULL, 0),
			 0);
	assert_true(strcmp(a, b) < 0); /* sorted by time */
	assert_int_equal(mgr_task_id_format(a, sizeof(a), 1, 0x1abcdef), 0);
	assert_string_equal(a, "0000000000001-abcdef");
	assert_int_equal(mgr_task_id_format(a, sizeof(a), 10000000000000ULL, 0),
			 -ERANGE);
	assert_int_equal(mgr_task_id_format(a, 5, 1, 1), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_rules),
		cmocka_unit_test(test_preconditions),
		cmocka_unit_test(test_op_table),
		cmocka_unit_test(test_task_transitions),
		cmocka_unit_test(test_task_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
