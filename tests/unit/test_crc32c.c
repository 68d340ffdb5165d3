/* Unit tests for lib/crc32c: known vectors, chaining, both code paths agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/crc32c.h"

static void test_known_vectors(void **state)
{
	uint8_t zeros[32] = { 0 }, ones[32];

	memset(ones, 0xff, sizeof(ones));
	/* RFC 3720 B.4 and the usual check value. */
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(crc32c(0, zeros, 32), 0x8a9136aau);
	assert_int_equal(crc32c(0, ones, 32), 0x62a8ab43u);
	assert_int_equal(crc32c(0, "", 0), 0);
}

static void test_chaining_and_alignment(void **state)
{
	uint8_t b[1031];
	uint32_t whole;

	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 31 + 7);
	whole = crc32c(0, b, sizeof(b));
	for (size_t cut = 0; cut <= sizeof(b); cut += 13)
		assert_int_equal(crc32c(crc32c(0, b, cut), b + cut,
					sizeof(b) - cut),
				 whole);
	/* Unaligned starts give the same as an aligned copy. */
	for (size_t off = 1; off < 8; off++) {
		uint8_t copy[1024];

		memcpy(copy, b + off, sizeof(copy));
		assert_int_equal(crc32c(0, b + off, sizeof(copy)),
				 crc32c(0, copy, sizeof(copy)));
	}
	for (size_t off = 0; off < 16; off++)
		assert_int_equal(crc32c_portable(0, b + off, sizeof(b) - off),
				 crc32c(0, b + off, sizeof(b) - off));
	assert_int_equal(crc32c_portable(0, "123456789", 9), 0xe3069283u);
	b[500] ^= 1;
	assert_int_not_equal(crc32c(0, b, sizeof(b)), whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_chaining_and_alignment),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
