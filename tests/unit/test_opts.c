/* Unit tests for lib/opts: a program's command line and config file from one table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/opts.h"

/* The options of a made-up program. */
struct t_opts {
	const char *name, *mode;
	int fast, slow;
	const char *items[4];
	int n_items, n_from_config;
};

enum { T_ITEM, T_FAIL };

static int t_handle(void *base, int id, const char *val, bool from_config)
{
	struct t_opts *o = base;

	if (id == T_FAIL || o->n_items == 4)
		return -ERANGE;
	o->items[o->n_items++] = val;
	o->n_from_config += from_config;
	return 0;
}

static const struct opt_def t_defs[] = {
	OPT_STR("name", struct t_opts, name),
	OPT_STR("mode", struct t_opts, mode),
	OPT_SWITCH("fast", struct t_opts, fast),
	{ .name = "slow",
	  .kind = OPT_BOOL,
	  .off = offsetof(struct t_opts, slow),
	  .no_config = true },
	{ .name = "item", .kind = OPT_CALL, .id = T_ITEM },
	{ .name = "fail", .kind = OPT_CALL, .id = T_FAIL, .no_config = true },
	{ 0 },
};

static const struct opt_prog t_prog = {
	.name = "t",
	.usage = "usage: t [--name N] [--mode M] [--fast] [--item I]...\n",
	.defs = t_defs,
	.handle = t_handle,
};

/* Parse a NULL-terminated argument list (after the program name). */
static int parse(struct t_opts *o, struct config **keep, ...)
{
	char *argv[16] = { (char *)"t" };
	int argc = 1;
	va_list ap;

	memset(o, 0, sizeof(*o));
	va_start(ap, keep);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	return opt_parse(&t_prog, argc, argv, o, keep);
}

/* A config file with text; path in buf. */
static void conf_write(char *buf, size_t size, const char *text)
{
	int fd;

	snprintf(buf, size, "/tmp/test_opts.XXXXXX");
	fd = mkstemp(buf);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_command_line(void **state)
{
	struct config *keep;
	struct t_opts o;

	assert_int_equal(parse(&o, &keep, "--name", "a", "--item", "x",
			       "--fast", "--name", "b", "--item", "y", NULL),
			 0);
	assert_null(keep);
	assert_string_equal(o.name, "b"); /* the last one wins */
	assert_null(o.mode);
	assert_int_equal(o.fast, 1);
	assert_int_equal(o.slow, 0);
	assert_int_equal(o.n_items, 2);
	assert_string_equal(o.items[0], "x");
	assert_string_equal(o.items[1], "y");
	assert_int_equal(o.n_from_config, 0);
	assert_int_equal(parse(&o, &keep, "--name=c", NULL), 0);
	assert_string_equal(o.name, "c");
}

static void test_help_and_bad_command_lines(void **state)
{
	struct config *keep;
	struct t_opts o;

	assert_int_equal(parse(&o, &keep, "--help", NULL), OPT_HELP);
	assert_int_equal(parse(&o, &keep, "--bogus", NULL), -EINVAL);
	assert_int_equal(parse(&o, &keep, "--name", NULL), -EINVAL);
	assert_int_equal(parse(&o, &keep, "--fast=1", NULL), -EINVAL);
	assert_int_equal(parse(&o, &keep, "--name", "a", "stray", NULL),
			 -EINVAL);
	/* The handler's error comes back as it is. */
	assert_int_equal(parse(&o, &keep, "--fail", "x", NULL), -ERANGE);
	assert_int_equal(parse(&o, &keep, "--item", "1", "--item", "2",
			       "--item", "3", "--item", "4", "--item", "5",
			       NULL),
			 -ERANGE);
}

static void test_config_fills_gaps(void **state)
{
	char path[64];
	struct config *keep;
	struct t_opts o;

	conf_write(path, sizeof(path),
		   "name = from-file\nmode = m1\nfast = yes\nitem = i1\n");
	assert_int_equal(
		parse(&o, &keep, "--config", path, "--name", "cl", NULL), 0);
	assert_non_null(keep);
	assert_string_equal(o.name, "cl"); /* the command line wins */
	assert_string_equal(o.mode, "m1");
	assert_int_equal(o.fast, 1);
	assert_int_equal(o.n_items, 1);
	assert_string_equal(o.items[0], "i1");
	assert_int_equal(o.n_from_config, 1);
	config_free(keep);
	/* Given on the command line: the file's items are not added. */
	assert_int_equal(
		parse(&o, &keep, "--item", "c1", "--config", path, NULL), 0);
	assert_int_equal(o.n_items, 1);
	assert_string_equal(o.items[0], "c1");
	assert_int_equal(o.n_from_config, 0);
	config_free(keep);
	unlink(path);
	conf_write(path, sizeof(path), "fast = off\n");
	assert_int_equal(parse(&o, &keep, "--config", path, NULL), 0);
	assert_int_equal(o.fast, 0);
	config_free(keep);
	unlink(path);
}

static void test_bad_config(void **state)
{
	static const char *const bad[] = {
		"nmae = x\n", /* unknown key */
		"slow = yes\n", /* command line only */
		"fail = x\n", /* command line only */
		"fast = quickly\n", /* not a boolean */
		"name = a\nname = b\n", /* twice */
		"name\n", /* not key = value */
	};
	struct config *keep;
	struct t_opts o;
	char path[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		conf_write(path, sizeof(path), bad[i]);
		assert_true(parse(&o, &keep, "--config", path, NULL) < 0);
		config_free(keep);
		unlink(path);
	}
	assert_int_equal(parse(&o, &keep, "--config", "/nonexistent/t.conf",
			       NULL),
			 -ENOENT);
	assert_null(keep);
}

static void test_table_too_large(void **state)
{
	struct opt_def defs[OPT_DEFS_MAX + 2];
	struct opt_prog p = t_prog;
	char *argv[] = { (char *)"t", NULL };
	struct config *keep;
	struct t_opts o = { 0 };
	size_t i;

	for (i = 0; i <= OPT_DEFS_MAX; i++)
		defs[i] = (struct opt_def)OPT_STR("name", struct t_opts, name);
	defs[i] = (struct opt_def){ 0 };
	p.defs = defs;
	assert_int_equal(opt_parse(&p, 1, argv, &o, &keep), -E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_line),
		cmocka_unit_test(test_help_and_bad_command_lines),
		cmocka_unit_test(test_config_fills_gaps),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_table_too_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
