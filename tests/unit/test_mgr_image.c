/* Unit tests of manager/api_images.c's pure part: --image-max-bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "manager/manager.h"

static void test_size_parse(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(mgr_image_size_parse("1", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(mgr_image_size_parse("1048576", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(mgr_image_size_parse("64G", &v), 0);
	assert_true(v == 64ull << 30);
	assert_int_equal(mgr_image_size_parse("3K", &v), 0);
	assert_int_equal(v, 3072);
	assert_int_equal(mgr_image_size_parse("2T", &v), 0);
	assert_true(v == 2ull << 40);
	assert_int_equal(mgr_image_size_parse("16777215T", &v), 0);
	v = 7;
	assert_int_equal(mgr_image_size_parse("16777216T", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("0", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("-1", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse(" 1", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("1X", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("1KB", &v), -EINVAL);
	assert_int_equal(mgr_image_size_parse("99999999999999999999", &v),
			 -EINVAL);
	assert_int_equal(mgr_image_size_parse(NULL, &v), -EINVAL);
	assert_int_equal(v, 7); /* untouched on errors */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
