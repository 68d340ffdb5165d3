/* Unit tests for the etcd client's input checks: endpoints, keys, prefixes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/etcd_internal.h"

static void test_endpoints_accepted(void **state)
{
	struct etcd_endpoints eps;
	const char *why = NULL;

	assert_int_equal(etcd_endpoints_parse("127.0.0.1:2379,http://"
					      "etcd-2.lan:32379,[::1]:1",
					      &eps, &why),
			 0);
	assert_int_equal(eps.n, 3);
	assert_string_equal(eps.host_port[0], "127.0.0.1:2379");
	/* The scheme is dropped: gRPC wants host:port. */
	assert_string_equal(eps.host_port[1], "etcd-2.lan:32379");
	assert_string_equal(eps.host_port[2], "[::1]:1");
	assert_int_equal(etcd_endpoints_parse("h:65535", &eps, &why), 0);
	assert_int_equal(eps.n, 1);
}

static void expect_bad(const char *list, int code, const char *words)
{
	struct etcd_endpoints eps;
	const char *why = NULL;

	assert_int_equal(etcd_endpoints_parse(list, &eps, &why), code);
	assert_non_null(why);
	if (!strstr(why, words))
		fail_msg("'%s': message '%s' lacks '%s'", list, why, words);
}

static void test_endpoints_refused(void **state)
{
	char many[17 * 16 + 1] = "";
	char longhost[300];
	int i;

	expect_bad(NULL, -EINVAL, "no etcd endpoint");
	expect_bad("", -EINVAL, "no etcd endpoint");
	expect_bad("host", -EINVAL, "host:port");
	expect_bad(":2379", -EINVAL, "host:port");
	expect_bad("host:", -EINVAL, "host:port");
	expect_bad("host:0", -EINVAL, "1..65535");
	expect_bad("host:65536", -EINVAL, "1..65535");
	expect_bad("host:99999999999999999999", -EINVAL, "1..65535");
	expect_bad("host:-1", -EINVAL, "1..65535");
	expect_bad("ho st:1", -EINVAL, "invalid character");
	expect_bad("h/x:1", -EINVAL, "invalid character");
	expect_bad("a:1,", -EINVAL, "empty endpoint");
	expect_bad("a:1,,b:2", -EINVAL, "empty endpoint");
	expect_bad("http://", -EINVAL, "empty endpoint");
	expect_bad("https://a:1", -EPROTONOSUPPORT, "https");
	for (i = 0; i < 17; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
			 "%sh%02d:1", i ? "," : "", i);
	expect_bad(many, -EINVAL, "more than 16");
	memset(longhost, 'a', sizeof(longhost));
	memcpy(longhost + sizeof(longhost) - 3, ":1", 3);
	expect_bad(longhost, -EINVAL, "longer than 255");
}

static void test_keys(void **state)
{
	char big[ETCD_MAX_KEY_LEN + 2];
	const char *why = NULL;

	assert_int_equal(etcd_key_check("/canopy/hosts/h1", &why), 0);
	assert_int_equal(etcd_key_check("", &why), -EINVAL);
	assert_non_null(strstr(why, "empty key"));
	assert_int_equal(etcd_key_check(NULL, &why), -EINVAL);
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(etcd_key_check(big, &why), -EINVAL);
	assert_non_null(strstr(why, "longer than 4096"));
	big[ETCD_MAX_KEY_LEN] = '\0';
	assert_int_equal(etcd_key_check(big, &why), 0);
}

static void test_prefix_end(void **state)
{
	char buf[8];
	size_t n = 0;

	etcd_prefix_end("/a/", 3, buf, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "/a0", 3);
	/* Trailing 0xff bytes are dropped before the increment. */
	etcd_prefix_end("a\xff\xff", 3, buf, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(buf, "b", 1);
	/* Only 0xff: to the end of the keyspace, "\0". */
	etcd_prefix_end("\xff", 1, buf, &n);
	assert_int_equal(n, 1);
	assert_int_equal(buf[0], '\0');
}

static void test_status_errno(void **state)
{
	assert_int_equal(etcd_status_errno(0), 0);
	assert_int_equal(etcd_status_errno(4), -ETIMEDOUT);
	assert_int_equal(etcd_status_errno(5), -ENOENT);
	assert_int_equal(etcd_status_errno(11), -ERANGE);
	assert_int_equal(etcd_status_errno(14), -ECONNREFUSED);
	assert_int_equal(etcd_status_errno(3), -EINVAL);
	assert_int_equal(etcd_status_errno(-1), -EIO);
	assert_int_equal(etcd_status_errno(99), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoints_accepted),
		cmocka_unit_test(test_endpoints_refused),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_prefix_end),
		cmocka_unit_test(test_status_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
