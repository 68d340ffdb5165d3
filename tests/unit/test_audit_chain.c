/* Unit tests for lib/audit_chain: writing lines, verifying, catching edits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/audit_chain.h"

/* A memfd holding `text`, positioned at 0. */
static int mem(const char *text)
{
	int fd = memfd_create("audit", 0);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* Three chained lines into out. */
static void chain3(char *out, size_t n, uint8_t head[AUDIT_HASH_LEN])
{
	static const char *const p[] = { "{\"seq\":1}", "{\"seq\":2}",
					 "{\"seq\":3}" };
	char line[256];
	size_t i;

	memset(head, 0, AUDIT_HASH_LEN);
	out[0] = '\0';
	for (i = 0; i < 3; i++) {
		assert_true(audit_chain_line(head, p[i], line, sizeof(line),
					     head) > 0);
		assert_true(strlen(out) + strlen(line) < n);
		strcat(out, line);
	}
}

static void test_good(void **state)
{
	char text[1024];
	uint8_t head[AUDIT_HASH_LEN];
	struct audit_verify v;
	int fd;

	chain3(text, sizeof(text), head);
	fd = mem(text);
	assert_int_equal(audit_chain_verify_fd(fd, &v), 0);
	assert_int_equal(v.lines, 3);
	assert_int_equal(v.bad_line, 0);
	assert_memory_equal(v.head, head, AUDIT_HASH_LEN);
	close(fd);
	fd = mem("");
	assert_int_equal(audit_chain_verify_fd(fd, &v), 0);
	assert_int_equal(v.lines, 0);
	close(fd);
}

static void expect_bad(const char *text, uint64_t line)
{
	struct audit_verify v;
	int fd = mem(text);

	assert_int_equal(audit_chain_verify_fd(fd, &v), -EBADMSG);
	assert_int_equal(v.bad_line, line);
	close(fd);
}

static void test_tampered(void **state)
{
	char text[1024], t[1024];
	uint8_t head[AUDIT_HASH_LEN];
	char *second, *third;

	chain3(text, sizeof(text), head);
	second = strchr(text, '\n') + 1;
	third = strchr(second, '\n') + 1;
	/* An edited payload on line 2. */
	strcpy(t, text);
	t[second - text + 8] = '9';
	expect_bad(t, 2);
	/* Line 2 deleted: line 3 no longer follows line 1. */
	snprintf(t, sizeof(t), "%.*s%s", (int)(second - text), text, third);
	expect_bad(t, 2);
	/* Lines swapped. */
	snprintf(t, sizeof(t), "%s%.*s%.*s", third, (int)(second - text), text,
		 (int)(third - second), second);
	expect_bad(t, 1);
	/* No final newline. */
	strcpy(t, text);
	t[strlen(t) - 1] = '\0';
	expect_bad(t, 3);
	/* A hash that is not hex; a line without a tab. */
	strcpy(t, text);
	t[second - text - 2] = 'z';
	expect_bad(t, 1);
	expect_bad("no tab here\n", 1);
}

static void test_long_line(void **state)
{
	static char text[3 * AUDIT_LINE_MAX];

	memset(text, 'a', sizeof(text) - 2);
	text[sizeof(text) - 2] = '\n';
	expect_bad(text, 1);
}

static void test_line_input(void **state)
{
	uint8_t h[AUDIT_HASH_LEN] = { 0 };
	char out[128];

	assert_int_equal(audit_chain_line(h, "a\tb", out, sizeof(out), h),
			 -EINVAL);
	assert_int_equal(audit_chain_line(h, "a\nb", out, sizeof(out), h),
			 -EINVAL);
	assert_int_equal(audit_chain_line(h, "", out, sizeof(out), h), -EINVAL);
	assert_int_equal(audit_chain_line(h, "abc", out, 20, h), -ENOSPC);
	assert_int_equal(audit_chain_line(h, "abc", out, sizeof(out), h),
			 3 + 1 + 64 + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_line_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
