/* Unit tests for lib/buf: growth, limits, consume/compaction, printf. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"

static void test_append_and_consume(void **state)
{
	struct buf b;
	const char *s;

	buf_init(&b, 0);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(buf_append(&b, "hello ", 6), 0);
	assert_int_equal(buf_append(&b, "world", 5), 0);
	assert_int_equal(buf_len(&b), 11);
	assert_memory_equal(buf_ptr(&b), "hello world", 11);
	buf_consume(&b, 6);
	assert_int_equal(buf_len(&b), 5);
	assert_int_equal(buf_cstr(&b, &s), 0);
	assert_string_equal(s, "world");
	buf_consume(&b, 100);
	assert_int_equal(buf_len(&b), 0);
	buf_free(&b);
	assert_null(b.data);
}

static void test_grows_past_many_appends(void **state)
{
	struct buf b;
	char chunk[1000];

	buf_init(&b, 0);
	for (int i = 0; i < 1000; i++) {
		memset(chunk, i & 0xff, sizeof(chunk));
		assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
	}
	assert_int_equal(buf_len(&b), 1000 * 1000);
	for (int i = 0; i < 1000; i++)
		assert_int_equal((unsigned char)buf_ptr(&b)[i * 1000 + 999],
				 i & 0xff);
	buf_free(&b);
}

static void test_limit_enforced(void **state)
{
	struct buf b;
	char data[100] = { 0 };
	int err = 0;

	buf_init(&b, 150);
	assert_int_equal(buf_append(&b, data, 100), 0);
	assert_int_equal(buf_append(&b, data, 51), -EMSGSIZE);
	assert_int_equal(buf_len(&b), 100); /* nothing lost on failure */
	assert_int_equal(buf_append(&b, data, 50), 0);
	assert_true(b.cap <= 150);
	/* A size that would overflow size_t arithmetic is refused. */
	assert_null(buf_reserve(&b, SIZE_MAX, &err));
	assert_int_equal(err, -EMSGSIZE);
	buf_free(&b);
}

static void test_consumed_room_is_reused(void **state)
{
	struct buf b;
	char data[100];
	size_t cap;

	memset(data, 'x', sizeof(data));
	buf_init(&b, 256);
	/* Fill to the limit, consume, refill: compaction makes it fit. */
	for (int round = 0; round < 50; round++) {
		assert_int_equal(buf_append(&b, data, 100), 0);
		assert_int_equal(buf_append(&b, data, 100), 0);
		buf_consume(&b, 150);
		assert_int_equal(buf_len(&b), 50);
		buf_consume(&b, 50);
	}
	cap = b.cap;
	assert_true(cap <= 256);
	buf_free(&b);
}

static void test_printf(void **state)
{
	struct buf b;
	const char *s;
	char big[5000];

	buf_init(&b, 0);
	assert_int_equal(buf_printf(&b, "%s=%d", "cpus", 4), 0);
	assert_int_equal(buf_printf(&b, " %s", "x"), 0);
	assert_int_equal(buf_cstr(&b, &s), 0);
	assert_string_equal(s, "cpus=4 x");
	assert_int_equal(buf_len(&b), 8);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(buf_printf(&b, "%s", big), 0);
	assert_int_equal(buf_len(&b), 8 + 4999);
	buf_free(&b);

	buf_init(&b, 10);
	assert_int_equal(buf_printf(&b, "%s", "0123456789abc"), -EMSGSIZE);
	assert_int_equal(buf_len(&b), 0);
	buf_free(&b);
}

static void test_reserve_commit(void **state)
{
	struct buf b;
	int err = 0;
	char *p;

	buf_init(&b, 0);
	p = buf_reserve(&b, 64, &err);
	assert_non_null(p);
	memcpy(p, "abc", 3);
	buf_commit(&b, 3);
	assert_int_equal(buf_len(&b), 3);
	assert_memory_equal(buf_ptr(&b), "abc", 3);
	buf_reset(&b);
	assert_int_equal(buf_len(&b), 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_consume),
		cmocka_unit_test(test_grows_past_many_appends),
		cmocka_unit_test(test_limit_enforced),
		cmocka_unit_test(test_consumed_room_is_reused),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_reserve_commit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
