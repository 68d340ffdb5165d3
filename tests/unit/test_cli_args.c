/* Unit tests for the canopy CLI's option parser and value parsers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli/args.h"

static char err[CLI_ERR_MAX];

static const struct cli_optdef cmd_opts[] = {
	{ .name = "memory", .has_arg = true },
	{ .name = "disk", .has_arg = true, .repeat = true },
	{ .name = "hard" },
	{ .name = "follow", .shortc = 'f' },
	{ 0 },
};
static const struct cli_optdef glob_opts[] = {
	{ .name = "server", .has_arg = true },
	{ .name = "output", .shortc = 'o', .has_arg = true },
	{ 0 },
};

static int parse(struct cli_args *a, const char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	err[0] = '\0';
	return cli_args_parse(a, cmd_opts, glob_opts, argc, argv, err,
			      sizeof(err));
}

static void test_options_anywhere(void **state)
{
	const char *argv[] = {
		"web1",	   "--memory",	     "512", "-ojson",	    "--disk",
		"size=1G", "--disk=path=/x", "-f",  "--server=h:1", "--hard",
		"--",	   "--not-an-opt",   NULL
	};
	struct cli_args a;
	const char *const *d;
	unsigned n;

	assert_int_equal(parse(&a, argv), 0);
	assert_int_equal(a.npos, 2);
	assert_string_equal(a.pos[0], "web1");
	assert_string_equal(a.pos[1], "--not-an-opt");
	assert_string_equal(cli_args_get(&a, "memory"), "512");
	assert_string_equal(cli_args_get(&a, "output"), "json");
	assert_string_equal(cli_args_get(&a, "server"), "h:1");
	assert_true(cli_args_has(&a, "hard"));
	assert_true(cli_args_has(&a, "follow"));
	d = cli_args_all(&a, "disk", &n);
	assert_int_equal(n, 2);
	assert_string_equal(d[0], "size=1G");
	assert_string_equal(d[1], "path=/x");
	assert_false(cli_args_has(&a, "nonexistent"));
	assert_null(cli_args_get(&a, "nonexistent"));
	assert_null(cli_args_all(&a, "nonexistent", &n));
	assert_int_equal(n, 0);
}

static void test_option_errors(void **state)
{
	const char *unknown[] = { "--memroy", "5", NULL };
	const char *unknown_short[] = { "-x", NULL };
	const char *missing[] = { "x", "--memory", NULL };
	const char *flag_val[] = { "--hard=yes", NULL };
	const char *twice[] = { "--memory", "1", "--memory=2", NULL };
	const char *lone_dash[] = { "-", NULL };
	struct cli_args a;

	assert_int_equal(parse(&a, unknown), -EINVAL);
	assert_string_equal(err, "unknown option '--memroy'");
	assert_int_equal(parse(&a, unknown_short), -EINVAL);
	assert_string_equal(err, "unknown option '-x'");
	assert_int_equal(parse(&a, missing), -EINVAL);
	assert_string_equal(err, "option --memory needs a value");
	assert_int_equal(parse(&a, flag_val), -EINVAL);
	assert_string_equal(err, "option --hard takes no value");
	assert_int_equal(parse(&a, twice), -EINVAL);
	assert_string_equal(err, "--memory given twice");
	/* A lone "-" is a positional (conventionally stdin). */
	assert_int_equal(parse(&a, lone_dash), 0);
	assert_int_equal(a.npos, 1);
}

static void test_limits(void **state)
{
	const char *argv[2 * (CLI_OPT_VALUES_MAX + 1) + 1];
	const char *pos[CLI_POS_MAX + 2];
	struct cli_args a;
	int i;

	for (i = 0; i <= CLI_OPT_VALUES_MAX; i++) {
		argv[2 * i] = "--disk";
		argv[2 * i + 1] = "size=1";
	}
	/* CLI_OPT_VALUES_MAX values fit; one more is refused. */
	argv[2 * CLI_OPT_VALUES_MAX] = NULL;
	assert_int_equal(parse(&a, argv), 0);
	argv[2 * CLI_OPT_VALUES_MAX] = "--disk";
	argv[2 * (CLI_OPT_VALUES_MAX + 1)] = NULL;
	assert_int_equal(parse(&a, argv), -EINVAL);
	assert_non_null(strstr(err, "--disk given more than"));
	for (i = 0; i <= CLI_POS_MAX; i++)
		pos[i] = "p";
	pos[CLI_POS_MAX + 1] = NULL;
	assert_int_equal(parse(&a, pos), -EINVAL);
	assert_string_equal(err, "too many arguments");
	pos[CLI_POS_MAX] = NULL;
	assert_int_equal(parse(&a, pos), 0);
}

static void test_sizes(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "4096B", 4096 },
		{ "1K", 1024 },
		{ "512M", 512u << 20 },
		{ "512MiB", 512u << 20 },
		{ "10g", UINT64_C(10) << 30 },
		{ "2T", UINT64_C(2) << 40 },
		{ "8388608T", UINT64_C(1) << 63 },
	};
	static const char *const bad[] = { "",	  "x", "-1",  "1.5G", "12x",
					   "1 G", "G", "1KB", "+5" };
	uint64_t v;
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(good); i++) {
		assert_int_equal(
			cli_parse_size(good[i].s, &v, err, sizeof(err)), 0);
		assert_true(v == good[i].v);
	}
	for (i = 0; i < CN_ARRAY_SIZE(bad); i++) {
		assert_int_equal(cli_parse_size(bad[i], &v, err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "is not a size"));
	}
	assert_int_equal(cli_parse_size("8388609T", &v, err, sizeof(err)),
			 -ERANGE);
	assert_int_equal(cli_parse_size("99999999999999999999", &v, err,
					sizeof(err)),
			 -ERANGE);
	assert_string_equal(err, "size '99999999999999999999' is too large");
}

static void test_uint_and_seconds(void **state)
{
	uint64_t v;
	unsigned ms;

	assert_int_equal(
		cli_parse_uint("--cpus", "4", 1, 8, &v, err, sizeof(err)), 0);
	assert_true(v == 4);
	assert_int_equal(cli_parse_uint("--cpus", "9", 1, 8, &v, err,
					sizeof(err)),
			 -ERANGE);
	assert_string_equal(err, "--cpus: 9 is out of range (1..8)");
	assert_int_equal(cli_parse_uint("--cpus", "4x", 1, 8, &v, err,
					sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "--cpus: '4x' is not a number");
	assert_int_equal(cli_parse_uint("--cpus", "-1", 1, 8, &v, err,
					sizeof(err)),
			 -EINVAL);
	assert_int_equal(cli_parse_uint("--n", "18446744073709551616", 0,
					UINT64_MAX, &v, err, sizeof(err)),
			 -ERANGE);
	assert_int_equal(cli_parse_seconds("--timeout", "1.5", &ms, err,
					   sizeof(err)),
			 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(cli_parse_seconds("--timeout", "0", &ms, err,
					   sizeof(err)),
			 -ERANGE);
	assert_int_equal(cli_parse_seconds("--timeout", "86401", &ms, err,
					   sizeof(err)),
			 -ERANGE);
	assert_int_equal(cli_parse_seconds("--timeout", "nan", &ms, err,
					   sizeof(err)),
			 -EINVAL);
	assert_int_equal(cli_parse_seconds("--timeout", "5s", &ms, err,
					   sizeof(err)),
			 -EINVAL);
}

static void test_disks(void **state)
{
	struct cli_disk d;

	assert_int_equal(cli_parse_disk("size=10G", &d, err, sizeof(err)), 0);
	assert_true(d.size_bytes == UINT64_C(10) << 30);
	assert_string_equal(d.path, "");
	assert_false(d.readonly);
	assert_int_equal(cli_parse_disk("path=/a/b,readonly,direct,serial=S9",
					&d, err, sizeof(err)),
			 0);
	assert_string_equal(d.path, "/a/b");
	assert_true(d.readonly && d.direct);
	assert_string_equal(d.serial, "S9");
	assert_int_equal(
		cli_parse_disk("path=ds1:x,size=1M", &d, err, sizeof(err)), 0);
	assert_true(d.size_bytes == 1u << 20);
}

static void test_disk_errors(void **state)
{
	static const struct {
		const char *s, *msg;
	} bad[] = {
		{ "", "empty item" },
		{ "size=1G,", "empty item" },
		{ "readonly", "give size=SIZE" },
		{ "size=0", "size must be more than 0" },
		{ "size=", "size must be 1 to" },
		{ "size=1Q", "'1Q' is not a size" },
		{ "path=", "path must be 1 to" },
		{ "serial=123456789012345678901,size=1",
		  "serial must be 1 to 20" },
		{ "size=1G,colour=red", "unknown item 'colour=red'" },
		{ "readonly=1,size=1", "unknown item 'readonly=1'" },
	};
	struct cli_disk d;
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		assert_int_equal(cli_parse_disk(bad[i].s, &d, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': \"%s\" lacks \"%s\"", bad[i].s, err,
				 bad[i].msg);
	}
}

static void test_servers(void **state)
{
	static const char *const good[] = { "127.0.0.1:7443", "host:1",
					    "[::1]:65535", "a.b.c:80" };
	static const char *const bad[] = { "",	      "host",	":80",
					   "h:",      "h:0",	"h:65536",
					   "h:x",     "h 1:80", "::1:80x",
					   "[::1:80", "h:80\n" };
	char out[64];
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(good); i++) {
		assert_int_equal(cli_parse_server(good[i], out, sizeof(out),
						  err, sizeof(err)),
				 0);
		assert_string_equal(out, good[i]);
	}
	for (i = 0; i < CN_ARRAY_SIZE(bad); i++)
		if (cli_parse_server(bad[i], out, sizeof(out), err,
				     sizeof(err)) != -EINVAL)
			fail_msg("server '%s' accepted", bad[i]);
	assert_int_equal(cli_parse_server("averyveryverylonghostname:80", out,
					  8, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "server address too long");
}

static void test_server_lists(void **state)
{
	char out[CLI_SERVERS_MAX][CLI_ADDR_MAX];
	size_t n = 99;

	assert_int_equal(
		cli_parse_server_list("a:1", out, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0], "a:1");
	assert_int_equal(cli_parse_server_list("a:1,[::1]:2,c:3", out, &n, err,
					       sizeof(err)),
			 0);
	assert_int_equal(n, 3);
	assert_string_equal(out[1], "[::1]:2");
	assert_string_equal(out[2], "c:3");
	assert_int_equal(cli_parse_server_list("a:1,", out, &n, err,
					       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "empty address"));
	assert_int_equal(cli_parse_server_list(",a:1", out, &n, err,
					       sizeof(err)),
			 -EINVAL);
	assert_int_equal(cli_parse_server_list("a:1,b", out, &n, err,
					       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'b' is not HOST:PORT"));
	assert_int_equal(cli_parse_server_list("a:1,b:2,c:3,d:4,e:5,f:6,g:7,"
					       "h:8,i:9",
					       out, &n, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "more than 8 servers"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_anywhere),
		cmocka_unit_test(test_option_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_uint_and_seconds),
		cmocka_unit_test(test_disks),
		cmocka_unit_test(test_disk_errors),
		cmocka_unit_test(test_servers),
		cmocka_unit_test(test_server_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
