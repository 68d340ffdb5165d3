/* Unit tests for lib/log: format, levels, escaping, redaction, sinks. */
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

#include "lib/log.h"

static int fmt(char *out, int n, enum log_level lvl, const char *comp,
	       const char *msg, const char *kvfmt, ...)
{
	va_list ap;
	int len;

	va_start(ap, kvfmt);
	len = log_format(out, n, 0, lvl, comp, msg, kvfmt, ap);
	va_end(ap);
	return len;
}

static void test_basic_line(void **state)
{
	char line[LOG_LINE_MAX];
	int n;

	n = fmt(line, sizeof(line), LOG_INFO, "vmm", "vm started",
		"vm=%s mem_mib=%u", "web1", 512u);
	assert_string_equal(line,
			    "level=info comp=vmm msg=\"vm started\" vm=web1 "
			    "mem_mib=512\n");
	assert_int_equal(n, (int)strlen(line));
	fmt(line, sizeof(line), LOG_ERROR, "agent", "bye", "");
	assert_string_equal(line, "level=error comp=agent msg=\"bye\"\n");
}

static void test_escapes_control_and_quotes(void **state)
{
	char line[LOG_LINE_MAX];

	/* A hostile name must not start a forged second line. */
	fmt(line, sizeof(line), LOG_WARN, "vmm", "say \"hi\"\nlevel=error",
	    "name=%s", "evil\nlevel=error msg=x\r");
	assert_null(strchr(line, '\r'));
	assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
	assert_non_null(strstr(line, "msg=\"say \\\"hi\\\"\\x0alevel=error\""));
	assert_non_null(strstr(line, "name=evil\\x0alevel=error"));
	assert_non_null(strstr(line, "\\x0d"));
}

static void test_redacts_secrets(void **state)
{
	char line[LOG_LINE_MAX];

	fmt(line, sizeof(line), LOG_INFO, "auth", "login",
	    "user=%s password=%s Token=\"%s x\" api_key=%s key=%s", "alice",
	    "hunter2", "abc", "K1", "/canopy/vms/a");
	assert_null(strstr(line, "hunter2"));
	assert_null(strstr(line, "abc"));
	assert_null(strstr(line, "K1"));
	assert_non_null(strstr(line, "user=alice"));
	assert_non_null(strstr(line, "password=<redacted>"));
	assert_non_null(strstr(line, "Token=<redacted>"));
	assert_non_null(strstr(line, "api_key=<redacted>"));
	/* Plain "key" (etcd keys) is not a secret. */
	assert_non_null(strstr(line, "key=/canopy/vms/a"));
	/* The whole quoted value went, not just its first word. */
	assert_null(strstr(line, " x\""));
}

static void test_truncates_long_lines(void **state)
{
	char line[128];
	char big[1000];
	int n;

	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = fmt(line, sizeof(line), LOG_INFO, "x", big, "");
	assert_true(n < (int)sizeof(line));
	assert_int_equal(n, (int)strlen(line));
	assert_string_equal(line + n - 4, "...\n");
}

static void test_levels(void **state)
{
	enum log_level l;

	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("WARN", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_level_parse("warning", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_level_parse("loud", &l), -EINVAL);
	log_set_level(LOG_WARN);
	assert_false(log_enabled(LOG_INFO));
	assert_true(log_enabled(LOG_ERROR));
	log_set_level(LOG_OFF);
	assert_false(log_enabled(LOG_ERROR));
	log_set_level(LOG_INFO);
}

static char *read_all(int fd)
{
	static char data[8192];
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	n = read(fd, data, sizeof(data) - 1);
	data[n < 0 ? 0 : n] = '\0';
	return data;
}

static void test_file_sink_and_filtering(void **state)
{
	char path[] = "/tmp/canopy-test-log-XXXXXX";
	int fd = mkstemp(path);
	char *text;

	assert_true(fd >= 0);
	assert_int_equal(log_open_file(path), 0);
	log_set_level(LOG_INFO);
	log_debug("t", "hidden");
	log_info("t", "shown", "n=%d", 7);
	log_error("t", "also shown");
	assert_int_equal(log_open_file(NULL), 0);
	text = read_all(fd);
	assert_null(strstr(text, "hidden"));
	assert_non_null(strstr(text, "level=info comp=t msg=\"shown\" n=7\n"));
	assert_non_null(strstr(text, "msg=\"also shown\""));
	/* Timestamp first: 2026-11-24T09:12:22.123Z */
	assert_int_equal(text[4], '-');
	assert_int_equal(text[10], 'T');
	assert_int_equal(text[23], 'Z');
	assert_int_equal(log_open_file("/nonexistent-dir/x.log"), -ENOENT);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_line),
		cmocka_unit_test(test_escapes_control_and_quotes),
		cmocka_unit_test(test_redacts_secrets),
		cmocka_unit_test(test_truncates_long_lines),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_file_sink_and_filtering),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
