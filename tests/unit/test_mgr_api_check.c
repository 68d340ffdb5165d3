/* Unit tests of manager/api_check.c: image file names and checksums of
 * ImportImage requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "manager/api_check.h"

static void test_image_name(void **state)
{
	char longest[MGR_IMAGE_NAME_MAX + 2];

	(void)state;
	assert_true(mgr_image_name_valid("a.img"));
	assert_true(mgr_image_name_valid("images/Debian-12_x86.qcow2"));
	assert_true(mgr_image_name_valid("...")); /* a name, not a parent */
	assert_false(mgr_image_name_valid(""));
	assert_false(mgr_image_name_valid("/abs"));
	assert_false(mgr_image_name_valid("a//b"));
	assert_false(mgr_image_name_valid("a/"));
	assert_false(mgr_image_name_valid("."));
	assert_false(mgr_image_name_valid(".."));
	assert_false(mgr_image_name_valid("a/../b"));
	assert_false(mgr_image_name_valid("a/./b"));
	assert_false(mgr_image_name_valid("a b"));
	assert_false(mgr_image_name_valid("a\n"));
	memset(longest, 'x', sizeof(longest));
	longest[MGR_IMAGE_NAME_MAX] = '\0';
	assert_true(mgr_image_name_valid(longest));
	longest[MGR_IMAGE_NAME_MAX] = 'x';
	longest[MGR_IMAGE_NAME_MAX + 1] = '\0';
	assert_false(mgr_image_name_valid(longest));
}

static void test_sha256(void **state)
{
	char out[65], in[66];

	(void)state;
	assert_true(mgr_sha256_parse("", out));
	assert_string_equal(out, "");
	memset(in, 'A', 64);
	in[64] = '\0';
	assert_true(mgr_sha256_parse(in, out));
	assert_int_equal(strlen(out), 64);
	assert_int_equal(out[0], 'a');
	in[10] = 'g';
	assert_false(mgr_sha256_parse(in, out));
	in[10] = 'a';
	in[63] = '\0';
	assert_false(mgr_sha256_parse(in, out)); /* 63 digits */
	in[63] = 'b';
	in[64] = 'c';
	in[65] = '\0';
	assert_false(mgr_sha256_parse(in, out)); /* 65 digits */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_name),
		cmocka_unit_test(test_sha256),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
