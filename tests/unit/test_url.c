/* Unit tests of lib/url.c: schemes, redaction, download checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/url.h"

static void test_scheme(void **state)
{
	char s[16];

	(void)state;
	assert_int_equal(cn_url_scheme("HTTPS://h/x", s, sizeof(s)), 0);
	assert_string_equal(s, "https");
	assert_int_equal(cn_url_scheme("ftp://h", s, sizeof(s)), 0);
	assert_string_equal(s, "ftp");
	assert_int_equal(cn_url_scheme("h/x", s, sizeof(s)), -EINVAL);
	assert_int_equal(cn_url_scheme("://h", s, sizeof(s)), -EINVAL);
	assert_int_equal(cn_url_scheme("1x://h", s, sizeof(s)), -EINVAL);
	assert_int_equal(cn_url_scheme("a b://h", s, sizeof(s)), -EINVAL);
	assert_int_equal(cn_url_scheme("verylongschemename://h", s, 8),
			 -EINVAL);
	assert_int_equal(cn_url_scheme(NULL, s, sizeof(s)), -EINVAL);
}

static void test_redact(void **state)
{
	char out[128];

	(void)state;
	cn_url_redact("https://user:secret@h:8443/a@b", out, sizeof(out));
	assert_string_equal(out, "https://***@h:8443/a@b");
	assert_null(strstr(out, "secret"));
	cn_url_redact("https://a@b:p@w@h/x", out, sizeof(out));
	assert_string_equal(out, "https://***@h/x");
	cn_url_redact("https://h/x?u=a@b", out, sizeof(out));
	assert_string_equal(out, "https://h/x?u=a@b");
	cn_url_redact("no-scheme", out, sizeof(out));
	assert_string_equal(out, "no-scheme");
	cn_url_redact("https://u:p@h", out, 10);
	assert_string_equal(out, "https://*");
}

static void test_check(void **state)
{
	char why[256], big[CN_URL_MAX + 2];

	(void)state;
	assert_int_equal(cn_url_check("https://h/x", 0, why, sizeof(why)), 0);
	assert_int_equal(cn_url_check("http://h/x", 1, why, sizeof(why)), 0);
	assert_int_equal(cn_url_check("http://h/x", 0, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "--image-allow-http"));
	assert_int_equal(cn_url_check("ftp://h/x", 1, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "'ftp'"));
	assert_int_equal(cn_url_check("file:///etc/passwd", 1, why,
				      sizeof(why)),
			 -EINVAL);
	assert_int_equal(cn_url_check("https://u:p@/x", 0, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "no host"));
	assert_int_equal(cn_url_check("https://h/a b", 0, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(cn_url_check("https://h/\x01", 0, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(cn_url_check("", 0, why, sizeof(why)), -EINVAL);
	assert_int_equal(cn_url_check(NULL, 0, why, sizeof(why)), -EINVAL);
	assert_int_equal(cn_url_check("h/x", 0, why, sizeof(why)), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "https://", 8);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(cn_url_check(big, 0, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scheme),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
