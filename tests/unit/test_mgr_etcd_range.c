/* Unit tests for lib/etcd_range (used by the manager's paged lists): bad
 * keys, end keys and limits are refused before any network traffic. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/etcd.h"
#include "lib/etcd_range.h"

static void test_bad_arguments(void **state)
{
	struct etcd_client *c = NULL;
	struct etcd_kvs *out = (struct etcd_kvs *)&c; /* must be cleared */
	static char big[ETCD_MAX_KEY_LEN + 2];

	/* Port 1: nothing listens; no call may get that far. */
	assert_int_equal(etcd_client_create("127.0.0.1:1", NULL, &c, NULL), 0);
	assert_int_equal(etcd_kv_range_between(c, "", "b", 10, false, &out),
			 -EINVAL);
	assert_null(out);
	assert_non_null(strstr(etcd_client_last_error(c), "range"));
	memset(big, 'k', sizeof(big) - 1);
	assert_int_equal(etcd_kv_range_between(c, big, NULL, 10, false, &out),
			 -EINVAL);
	assert_int_equal(etcd_kv_range_between(c, "a", big, 10, false, &out),
			 -EINVAL);
	assert_int_equal(etcd_kv_range_between(c, "a", "b", 0, false, &out),
			 -EINVAL);
	assert_non_null(strstr(etcd_client_last_error(c), "limit"));
	assert_int_equal(etcd_kv_range_between(c, "a", "b", -1, true, &out),
			 -EINVAL);
	assert_null(out);
	etcd_client_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
