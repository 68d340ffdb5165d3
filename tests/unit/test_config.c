/* Unit tests for lib/config: syntax, typed getters and every error message. */
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

#include "lib/config.h"

static char err[512];

static struct config *parse_ok(const char *text)
{
	struct config *c = NULL;

	err[0] = 0;
	assert_int_equal(config_parse("t.conf", text, strlen(text), &c, err,
				      sizeof(err)),
			 0);
	assert_non_null(c);
	return c;
}

/* Parse text expecting rc and a message that contains want. */
static void parse_bad(const char *text, size_t len, int rc, const char *want)
{
	struct config *c = (struct config *)1;

	err[0] = 0;
	assert_int_equal(
		config_parse("t.conf", text, len, &c, err, sizeof(err)), rc);
	assert_null(c);
	if (!strstr(err, want))
		fail_msg("message \"%s\" lacks \"%s\"", err, want);
	assert_null(strchr(err, '\n'));
}

static void test_basic_syntax(void **state)
{
	struct config *c =
		parse_ok("# comment\n"
			 "\n"
			 "  name =  web1  \n"
			 "memory=512 # MiB\n"
			 "cmdline = \"console=ttyS0 # not a comment\"\n"
			 "esc = \"a\\\"b\\\\c\\nd\"\n"
			 "empty =\n"
			 "dos = yes\r\n"
			 "url = http://x/#frag\n"
			 "last = no newline");

	assert_int_equal(config_count(c), 8);
	assert_string_equal(config_get(c, "name"), "web1");
	assert_string_equal(config_get(c, "memory"), "512");
	assert_string_equal(config_get(c, "cmdline"),
			    "console=ttyS0 # not a comment");
	assert_string_equal(config_get(c, "esc"), "a\"b\\c\nd");
	assert_string_equal(config_get(c, "empty"), "");
	assert_string_equal(config_get(c, "dos"), "yes");
	assert_string_equal(config_get(c, "url"), "http://x/#frag");
	assert_string_equal(config_get(c, "last"), "no newline");
	assert_null(config_get(c, "missing"));
	assert_string_equal(config_key(c, 0), "name");
	assert_string_equal(config_value(c, 1), "512");
	assert_null(config_key(c, 99));
	config_free(c);
	config_free(NULL);
}

static void test_syntax_errors(void **state)
{
	parse_bad("a = 1\nmemory 512\n", 17, -EINVAL,
		  "t.conf:2: expected 'key = value', got \"memory 512\"");
	parse_bad("= 5\n", 4, -EINVAL, "t.conf:1: expected 'key = value'");
	parse_bad("me$m = 5\n", 9, -EINVAL, "t.conf:1: expected");
	parse_bad("cpus = 1\nx = 2\ncpus = 2\n", 24, -EINVAL,
		  "t.conf:3: duplicate key 'cpus' (first set on line 1)");
	parse_bad("a = \"open\n", 10, -EINVAL,
		  "t.conf:1: a: unterminated quoted value");
	parse_bad("a = \"x\\q\"\n", 10, -EINVAL, "t.conf:1: a: unknown escape");
	parse_bad("a = \"x\" y\n", 10, -EINVAL,
		  "t.conf:1: a: text after the closing quote");
	parse_bad("a = 1\nb = \0\n", 12, -EINVAL,
		  "t.conf:2: NUL byte in a text file");
}

static void test_control_chars_are_escaped(void **state)
{
	parse_bad("\x1b[31mred\n", 9, -EINVAL, "got \"\\x1b[31mred\"");
}

static void test_limits(void **state)
{
	size_t n = CONFIG_LINE_MAX + 10;
	char *big = malloc(n + 1), key[CONFIG_KEY_MAX + 8];

	memset(big, 'a', n);
	big[n] = 0;
	parse_bad(big, n, -EINVAL, "t.conf:1: line longer than 4096");
	free(big);

	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = 0;
	big = malloc(strlen(key) + 8);
	sprintf(big, "%s = 1\n", key);
	parse_bad(big, strlen(big), -EINVAL, "t.conf:1: key longer than 63");
	free(big);

	n = (CONFIG_ENTRIES_MAX + 1) * 16;
	big = malloc(n);
	big[0] = 0;
	for (int i = 0; i <= CONFIG_ENTRIES_MAX; i++)
		sprintf(big + strlen(big), "k%d = %d\n", i, i);
	parse_bad(big, strlen(big), -E2BIG, "t.conf:1025: more than 1024");
	free(big);

	parse_bad("a = 1\n", CONFIG_FILE_MAX + 1, -EFBIG,
		  "t.conf: larger than");
}

static void test_numbers(void **state)
{
	struct config *c = parse_ok("dec = 512\nhex = 0x20\nbad = 12x\n"
				    "neg = -1\nbig = 99999999999999999999\n"
				    "space = \" 5\"\nempty =\n");
	uint64_t v = 7;

	assert_int_equal(
		config_get_u64(c, "dec", 0, 1000, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 512);
	assert_int_equal(
		config_get_u64(c, "hex", 0, 1000, &v, err, sizeof(err)), 0);
	assert_int_equal(v, 32);
	v = 7;
	assert_int_equal(config_get_u64(c, "nope", 0, 1, &v, err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(v, 7); /* untouched: defaults survive */
	assert_int_equal(config_get_u64(c, "bad", 0, 1000, &v, err,
					sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "t.conf:3: bad: '12x' is not a number");
	assert_int_equal(config_get_u64(c, "neg", 0, 1000, &v, err,
					sizeof(err)),
			 -EINVAL);
	assert_int_equal(config_get_u64(c, "space", 0, 9, &v, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(config_get_u64(c, "empty", 0, 9, &v, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(config_get_u64(c, "big", 0, UINT64_MAX, &v, err,
					sizeof(err)),
			 -ERANGE);
	assert_int_equal(config_get_u64(c, "dec", 1000, 2000, &v, err,
					sizeof(err)),
			 -ERANGE);
	assert_string_equal(err,
			    "t.conf:1: dec: 512 is out of range (1000..2000)");
	assert_int_equal(v, 7);
	config_free(c);
}

static void test_sizes(void **state)
{
	struct config *c = parse_ok("a = 4K\nb = 2MiB\nc = 1g\nd = 3GB\n"
				    "e = 17179869184G\nf = 5X\ng = 10\n");
	uint64_t v;

	assert_int_equal(config_get_size(c, "a", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 0);
	assert_int_equal(v, 4096);
	assert_int_equal(config_get_size(c, "b", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 0);
	assert_int_equal(v, 2u << 20);
	assert_int_equal(config_get_size(c, "c", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 0);
	assert_int_equal(v, 1u << 30);
	assert_int_equal(config_get_size(c, "d", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 0);
	assert_int_equal(v, 3ull << 30);
	assert_int_equal(config_get_size(c, "e", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 -ERANGE); /* 2^34 GiB overflows 64 bits */
	assert_int_equal(config_get_size(c, "f", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "t.conf:6: f: '5X' is not a size");
	assert_int_equal(config_get_size(c, "g", 0, UINT64_MAX, &v, err,
					 sizeof(err)),
			 0);
	assert_int_equal(v, 10);
	/* Plain numbers do not take suffixes. */
	assert_int_equal(config_get_u64(c, "a", 0, UINT64_MAX, &v, err,
					sizeof(err)),
			 -EINVAL);
	config_free(c);
}

static void test_bools(void **state)
{
	struct config *c = parse_ok("a = yes\nb = OFF\nc = 1\nd = maybe\n");
	int v = 5;

	assert_int_equal(config_get_bool(c, "a", &v, err, sizeof(err)), 0);
	assert_int_equal(v, 1);
	assert_int_equal(config_get_bool(c, "b", &v, err, sizeof(err)), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_get_bool(c, "c", &v, err, sizeof(err)), 0);
	assert_int_equal(v, 1);
	assert_int_equal(config_get_bool(c, "x", &v, err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(config_get_bool(c, "d", &v, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "t.conf:4: d: 'maybe' is not a boolean"));
	config_free(c);
}

static void test_unknown_keys(void **state)
{
	static const char *const allowed[] = { "memory", "cpus", NULL };
	struct config *c = parse_ok("cpus = 2\nmemroy = 5\n");

	assert_int_equal(config_check_keys(c, allowed, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "t.conf:2: unknown key 'memroy'");
	config_free(c);
	c = parse_ok("cpus = 2\n");
	assert_int_equal(config_check_keys(c, allowed, err, sizeof(err)), 0);
	config_free(c);
}

static void test_load_files(void **state)
{
	char dir[] = "/tmp/canopy-config-XXXXXX", path[64];
	struct config *c = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("memory = 256\ncpus = 2\n", f);
	fclose(f);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(config_get(c, "cpus"), "2");
	config_free(c);

	f = fopen(path, "w");
	fputs("memory = 256\nmemory 3\n", f);
	fclose(f);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/vm.conf:2: expected 'key = value'"));
	unlink(path);

	assert_int_equal(config_load(path, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "vm.conf: No such file or directory"));
	assert_null(c);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_syntax),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_control_chars_are_escaped),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_bools),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_load_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
