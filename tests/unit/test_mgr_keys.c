/* Unit tests for manager/keys: name checks, key layout, the leader value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "manager/keys.h"

static void test_names(void **state)
{
	char long_vm[65];

	assert_true(mgr_name_valid(MGR_NAME_VM, "web-1"));
	assert_false(mgr_name_valid(MGR_NAME_VM, "Web1"));
	assert_false(mgr_name_valid(MGR_NAME_VM, "web_1"));
	assert_false(mgr_name_valid(MGR_NAME_VM, "../etc"));
	assert_false(mgr_name_valid(MGR_NAME_VM, ""));
	assert_false(mgr_name_valid(MGR_NAME_VM, NULL));
	memset(long_vm, 'a', 64);
	long_vm[64] = '\0';
	assert_false(mgr_name_valid(MGR_NAME_VM, long_vm));
	long_vm[63] = '\0';
	assert_true(mgr_name_valid(MGR_NAME_VM, long_vm));
	assert_true(mgr_name_valid(MGR_NAME_HOST, "Host_1.lab"));
	assert_false(mgr_name_valid(MGR_NAME_HOST, "h/1"));
	assert_true(mgr_name_valid(MGR_NAME_TASK, "1764201600000-0000a1"));
	assert_false(mgr_name_valid(MGR_NAME_TASK, "zz"));
}

static void test_keys(void **state)
{
	char k[MGR_KEY_MAX], tiny[8];

	assert_int_equal(mgr_key_join(k, sizeof(k), MGR_PREFIX_VMS, MGR_NAME_VM,
				      "web1"),
			 0);
	assert_string_equal(k, "/canopy/vms/web1");
	assert_int_equal(mgr_key_join(k, sizeof(k), MGR_PREFIX_VMS, MGR_NAME_VM,
				      "a/b"),
			 -EINVAL);
	assert_int_equal(mgr_key_join(tiny, sizeof(tiny), MGR_PREFIX_HOSTS,
				      MGR_NAME_HOST, "h1"),
			 -ENAMETOOLONG);
	assert_int_equal(mgr_key_event(k, sizeof(k), 42), 0);
	assert_string_equal(k, "/canopy/events/00000000000000000042");
	assert_int_equal(mgr_key_placement(k, sizeof(k), "h1", "web1"), 0);
	assert_string_equal(k, "/canopy/placement/h1/web1");
	assert_int_equal(mgr_key_placement(k, sizeof(k), "h1", NULL), 0);
	assert_string_equal(k, "/canopy/placement/h1/");
	assert_int_equal(mgr_key_placement(k, sizeof(k), "h 1", NULL), -EINVAL);
	assert_string_equal(mgr_key_name("/canopy/vms/web1", MGR_PREFIX_VMS),
			    "web1");
	assert_null(mgr_key_name("/canopy/hosts/h1", MGR_PREFIX_VMS));
}

static void test_event_keys_sort_by_seq(void **state)
{
	char a[MGR_KEY_MAX], b[MGR_KEY_MAX];

	assert_int_equal(mgr_key_event(a, sizeof(a), 9), 0);
	assert_int_equal(mgr_key_event(b, sizeof(b), 10), 0);
	assert_true(strcmp(a, b) < 0);
	assert_int_equal(mgr_key_event(b, sizeof(b), UINT64_MAX), 0);
	assert_true(strcmp(a, b) < 0);
}

static void test_leader_value(void **state)
{
	struct mgr_leader_info in = { "m1", "127.0.0.1:7443",
				      "tcp://127.0.0.1:7444" },
			       out;
	char v[512];
	const char *bad[] = {
		"",
		"id=m1",
		"id=m1 api=a",
		"id= api=a bus=b",
		"api=a id=m1 bus=b",
		"id=m1 api=a bus=b extra=1",
		"id=m1 api=a bus=b ",
	};
	size_t i;

	assert_int_equal(mgr_leader_format(v, sizeof(v), &in), 0);
	assert_string_equal(v, "id=m1 api=127.0.0.1:7443 "
			       "bus=tcp://127.0.0.1:7444");
	assert_int_equal(mgr_leader_parse(v, strlen(v), &out), 0);
	assert_string_equal(out.id, "m1");
	assert_string_equal(out.api, "127.0.0.1:7443");
	assert_string_equal(out.bus, "tcp://127.0.0.1:7444");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mgr_leader_parse(bad[i], strlen(bad[i]), &out),
				 -EINVAL);
	memset(v, 'x', sizeof(v));
	memcpy(v, "id=", 3);
	assert_int_equal(mgr_leader_parse(v, sizeof(v), &out), -EINVAL);
	assert_int_equal(mgr_leader_format(v, 8, &in), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_event_keys_sort_by_seq),
		cmocka_unit_test(test_leader_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
