/* Unit tests for lib/err: errno mapping, names, exit codes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/err.h"

static void test_errno_mapping(void **state)
{
	assert_int_equal(cn_code_from_errno(0), CN_OK);
	assert_int_equal(cn_code_from_errno(-ENOENT), CN_NOT_FOUND);
	assert_int_equal(cn_code_from_errno(-EEXIST), CN_ALREADY_EXISTS);
	assert_int_equal(cn_code_from_errno(-EINVAL), CN_INVALID_ARGUMENT);
	assert_int_equal(cn_code_from_errno(-EBUSY), CN_FAILED_PRECONDITION);
	assert_int_equal(cn_code_from_errno(-ETIMEDOUT), CN_DEADLINE_EXCEEDED);
	assert_int_equal(cn_code_from_errno(-ECONNREFUSED), CN_UNAVAILABLE);
	assert_int_equal(cn_code_from_errno(-EACCES), CN_PERMISSION_DENIED);
	assert_int_equal(cn_code_from_errno(-EMSGSIZE), CN_RESOURCE_EXHAUSTED);
	assert_int_equal(cn_code_from_errno(-EBADMSG), CN_DATA_LOSS);
	/* Something without a specific meaning is INTERNAL, not OK. */
	assert_int_equal(cn_code_from_errno(-EXDEV), CN_INTERNAL);
	assert_int_equal(cn_code_from_errno(-99999), CN_INTERNAL);
}

static void test_round_trip_through_errno(void **state)
{
	/* Every code except the catch-alls survives code -> errno -> code. */
	for (int c = 0; c < CN_CODE_COUNT; c++) {
		if (c == CN_UNKNOWN || c == CN_INTERNAL)
			continue;
		assert_int_equal(cn_code_from_errno(cn_code_to_errno(c)), c);
	}
	assert_int_equal(cn_code_to_errno(CN_OK), 0);
	assert_true(cn_code_to_errno((enum cn_code)77) < 0);
}

static void test_names_and_parse(void **state)
{
	enum cn_code c;

	for (int i = 0; i < CN_CODE_COUNT; i++) {
		assert_int_equal(cn_code_parse(cn_code_name(i), &c), 0);
		assert_int_equal(c, i);
		assert_true(strlen(cn_code_desc(i)) > 3);
	}
	assert_string_equal(cn_code_name(CN_NOT_FOUND), "NOT_FOUND");
	assert_string_equal(cn_code_name((enum cn_code) - 3), "UNKNOWN");
	assert_int_equal(cn_code_parse("NOPE", &c), -EINVAL);
	assert_int_equal(cn_code_parse("not_found", &c), -EINVAL);
}

static void test_grpc_and_exit(void **state)
{
	/* Our values are gRPC's numbers. */
	assert_int_equal(cn_code_grpc(CN_UNAVAILABLE), 14);
	assert_int_equal(cn_code_grpc(CN_UNAUTHENTICATED), 16);
	assert_int_equal(cn_code_grpc((enum cn_code)99), 2);
	assert_int_equal(cn_code_exit(CN_OK), 0);
	assert_int_equal(cn_code_exit(CN_INVALID_ARGUMENT), 2);
	assert_int_equal(cn_code_exit(CN_NOT_FOUND), 3);
	assert_int_equal(cn_code_exit(CN_ALREADY_EXISTS), 4);
	assert_int_equal(cn_code_exit(CN_FAILED_PRECONDITION), 5);
	assert_int_equal(cn_code_exit(CN_PERMISSION_DENIED), 6);
	assert_int_equal(cn_code_exit(CN_UNAVAILABLE), 7);
	assert_int_equal(cn_code_exit(CN_INTERNAL), 1);
	for (int i = 1; i < CN_CODE_COUNT; i++)
		assert_int_not_equal(cn_code_exit(i), 0);
}

static void test_strerror(void **state)
{
	assert_string_equal(cn_strerror(0), "success");
	assert_string_equal(cn_strerror(-ENOENT), "No such file or directory");
	assert_string_equal(cn_strerror(ENOENT), "No such file or directory");
	assert_string_equal(cn_strerror(-123456), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_round_trip_through_errno),
		cmocka_unit_test(test_names_and_parse),
		cmocka_unit_test(test_grpc_and_exit),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
