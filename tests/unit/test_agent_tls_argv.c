/* Unit tests for the agent's migration TLS options: which files in
 * --pki-dir make the VMM's --tls-* options, and nothing without them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/agent/spec.h"

static char dir[64];

static void touch(const char *name)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/canopy-tls-argv-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	static const char *const files[] = { AGENT_TLS_CA, AGENT_TLS_CERT,
					     AGENT_TLS_KEY };
	char path[128];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	return rmdir(dir);
}

static void test_no_dir_no_options(void **state)
{
	struct agent_argv av = { 0 };

	(void)state;
	assert_int_equal(agent_tls_ready(NULL), 0);
	assert_int_equal(agent_tls_ready(""), 0);
	assert_int_equal(agent_tls_ready("/nonexistent/pki"), 0);
	assert_int_equal(agent_vmm_argv_tls(NULL, &av), 0);
	assert_int_equal(av.n, 0);
	agent_argv_free(&av);
}

static void test_options_only_with_all_three(void **state)
{
	struct agent_argv av = { 0 };
	char want[128];

	(void)state;
	assert_int_equal(agent_tls_ready(dir), 0);
	touch(AGENT_TLS_CA);
	touch(AGENT_TLS_CERT);
	/* The key is missing: no options, a plain stream (warned). */
	assert_int_equal(agent_tls_ready(dir), 0);
	assert_int_equal(agent_vmm_argv_tls(dir, &av), 0);
	assert_int_equal(av.n, 0);
	touch(AGENT_TLS_KEY);
	assert_int_equal(agent_tls_ready(dir), 1);
	assert_int_equal(agent_argv_add(&av, "canopy-vmm"), 0);
	assert_int_equal(agent_vmm_argv_tls(dir, &av), 1);
	assert_int_equal(av.n, 7);
	assert_string_equal(av.v[1], "--tls-ca");
	snprintf(want, sizeof(want), "%s/ca.pem", dir);
	assert_string_equal(av.v[2], want);
	assert_string_equal(av.v[3], "--tls-cert");
	snprintf(want, sizeof(want), "%s/host.pem", dir);
	assert_string_equal(av.v[4], want);
	assert_string_equal(av.v[5], "--tls-key");
	snprintf(want, sizeof(want), "%s/host.key", dir);
	assert_string_equal(av.v[6], want);
	assert_null(av.v[7]);
	agent_argv_free(&av);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_dir_no_options),
		cmocka_unit_test(test_options_only_with_all_three),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
