/* Unit tests for the canopy CLI's output: tables, formatters, JSON. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/out.h"
#include "lib/json_esc.h"
#include "cli/pbjson.h"
#include "proto/canopy_api.pb-c.h"

/* A memory stream the code under test writes to. */
struct mem {
	char *buf;
	size_t len;
	FILE *f;
};

static void mem_open(struct mem *m)
{
	m->buf = NULL;
	m->len = 0;
	m->f = open_memstream(&m->buf, &m->len);
	assert_non_null(m->f);
}

/* Close the stream and return its text (the caller frees). */
static char *mem_text(struct mem *m)
{
	fclose(m->f);
	return m->buf;
}

static void test_table_alignment(void **state)
{
	static const char *const hdr[] = { "ID", "NAME", "STATE" };
	const char *r1[] = { "h1", "a-long-name", "connected" };
	const char *r2[] = { "host10", "b\xc3\xa9", NULL };
	struct cli_table t;
	struct mem m;
	char *s;

	cli_table_init(&t, 3, hdr);
	assert_int_equal(cli_table_add(&t, r1), 0);
	assert_int_equal(cli_table_add(&t, r2), 0);
	mem_open(&m);
	cli_table_print(&t, m.f);
	s = mem_text(&m);
	/* Columns are aligned by display width (é is one column), cells
	 * separated by two spaces, no trailing blanks. */
	assert_string_equal(s, "ID      NAME         STATE\n"
			       "h1      a-long-name  connected\n"
			       "host10  b\xc3\xa9\n");
	free(s);
	cli_table_free(&t);
}

static void test_table_empty_and_many(void **state)
{
	static const char *const hdr[] = { "A", "B" };
	const char *row[] = { "x", "y" };
	struct cli_table t;
	struct mem m;
	char *s;
	int i;

	cli_table_init(&t, 2, hdr);
	mem_open(&m);
	cli_table_print(&t, m.f);
	s = mem_text(&m);
	assert_string_equal(s, "A  B\n");
	free(s);
	for (i = 0; i < 1000; i++)
		assert_int_equal(cli_table_add(&t, row), 0);
	assert_int_equal(t.nrows, 1000);
	cli_table_free(&t);
}

static void test_text_clean(void **state)
{
	char out[300], longs[200];

	cli_text_clean(out, sizeof(out), "a\x1b[2J\nb\x7f", 64);
	assert_string_equal(out, "a?[2J?b?");
	/* Invalid UTF-8 bytes become '?', valid sequences stay. */
	cli_text_clean(out, sizeof(out), "\xff\xc3\xa9\xe2\x82", 64);
	assert_string_equal(out, "?\xc3\xa9??");
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	cli_text_clean(out, sizeof(out), longs, 10);
	assert_string_equal(out, "xxxxxxx...");
	cli_text_clean(out, 6, longs, 64);
	assert_int_equal(strlen(out), 5);
	assert_int_equal(cli_text_width("h\xc3\xa9llo"), 5);
	assert_int_equal(cli_text_width(""), 0);
}

static void test_kv(void **state)
{
	const char *keys[] = { "Name", "Memory used", "" };
	const char *vals[] = { "web1", "1 GiB\n", "second" };
	struct mem m;
	char *s;

	mem_open(&m);
	cli_kv_print(m.f, 3, keys, vals);
	s = mem_text(&m);
	assert_string_equal(s, "Name:         web1\n"
			       "Memory used:  1 GiB?\n"
			       "              second\n");
	free(s);
}

static void test_sizes(void **state)
{
	char b[32];

	cli_fmt_mib(b, sizeof(b), 0);
	assert_string_equal(b, "0 MiB");
	cli_fmt_mib(b, sizeof(b), 512);
	assert_string_equal(b, "512 MiB");
	cli_fmt_mib(b, sizeof(b), 1536);
	assert_string_equal(b, "1.5 GiB");
	cli_fmt_mib(b, sizeof(b), 24105);
	assert_string_equal(b, "24 GiB");
	cli_fmt_mib(b, sizeof(b), 3 << 20);
	assert_string_equal(b, "3.0 TiB");
	cli_fmt_mib(b, sizeof(b), UINT64_MAX);
	assert_non_null(strstr(b, " TiB"));
	cli_fmt_bytes(b, sizeof(b), 1023);
	assert_string_equal(b, "1023 B");
	cli_fmt_bytes(b, sizeof(b), 4096);
	assert_string_equal(b, "4.0 KiB");
	cli_fmt_bytes(b, sizeof(b), UINT64_C(10) << 30);
	assert_string_equal(b, "10 GiB");
	cli_fmt_bytes(b, sizeof(b), UINT64_MAX);
	assert_string_equal(b, "16 EiB");
}

static void test_ages_and_durations(void **state)
{
	const uint64_t now = 1800000000000ull;
	char b[32];

	cli_fmt_age(b, sizeof(b), 0, now);
	assert_string_equal(b, "-");
	cli_fmt_age(b, sizeof(b), now + 5000, now);
	assert_string_equal(b, "just now");
	cli_fmt_age(b, sizeof(b), now - 5400, now);
	assert_string_equal(b, "5s ago");
	cli_fmt_age(b, sizeof(b), now - 185000, now);
	assert_string_equal(b, "3m ago");
	cli_fmt_age(b, sizeof(b), now - 7200000, now);
	assert_string_equal(b, "2h ago");
	cli_fmt_age(b, sizeof(b), now - 4 * 86400000ull, now);
	assert_string_equal(b, "4d ago");
	cli_fmt_duration(b, sizeof(b), 850);
	assert_string_equal(b, "850ms");
	cli_fmt_duration(b, sizeof(b), 12345);
	assert_string_equal(b, "12.3s");
	cli_fmt_duration(b, sizeof(b), 245000);
	assert_string_equal(b, "4m05s");
	cli_fmt_duration(b, sizeof(b), 7800000);
	assert_string_equal(b, "2h10m");
}

static void test_enum_and_bar(void **state)
{
	char b[48];

	cli_fmt_enum(b, sizeof(b), "HOST_STATE_CONNECTED", "HOST_STATE_");
	assert_string_equal(b, "connected");
	cli_fmt_enum(b, sizeof(b), "HOST_STATE_UNSPECIFIED", "HOST_STATE_");
	assert_string_equal(b, "-");
	cli_fmt_enum(b, sizeof(b), NULL, "X_");
	assert_string_equal(b, "-");
	cli_fmt_enum(b, sizeof(b), "OTHER_NAME", "HOST_STATE_");
	assert_string_equal(b, "other_name");
	cli_fmt_bar(b, sizeof(b), 50, 10);
	assert_string_equal(b, "[#####.....]  50%");
	cli_fmt_bar(b, sizeof(b), 250, 4);
	assert_string_equal(b, "[####] 100%");
	cli_fmt_bar(b, sizeof(b), 0, 4);
	assert_string_equal(b, "[....]   0%");
}

static void test_json_escaping(void **state)
{
	static const char in[] = "q\"b\\n\n\t\x01\x7f\xc3\xa9\xff\xed\xa0\x80"
				 "\xf0\x9f\x98\x80\xc0\xaf";
	struct mem m;
	char *s;

	mem_open(&m);
	cn_json_escape(m.f, in, sizeof(in) - 1);
	s = mem_text(&m);
	/* Quotes and backslashes escaped, control characters as \u, valid
	 * UTF-8 kept, invalid bytes, surrogates and overlong forms as
	 * U+FFFD. */
	assert_string_equal(s, "\"q\\\"b\\\\n\\n\\t\\u0001\\u007f\xc3\xa9"
			       "\\ufffd\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80"
			       "\\ufffd\\ufffd\"");
	free(s);
	mem_open(&m);
	cn_json_escape(m.f, "a\0b", 3);
	s = mem_text(&m);
	assert_string_equal(s, "\"a\\u0000b\"");
	free(s);
}

static void test_json_writer(void **state)
{
	struct cli_json j;
	struct mem m;
	char *s;

	mem_open(&m);
	cli_json_init(&j, m.f);
	cli_json_begin_object(&j);
	cli_json_key(&j, "a");
	cli_json_uint(&j, UINT64_MAX);
	cli_json_key(&j, "b");
	cli_json_begin_array(&j);
	cli_json_int(&j, -3);
	cli_json_bool(&j, true);
	cli_json_null(&j);
	cli_json_double(&j, 1.0 / 0.0);
	cli_json_end_array(&j);
	cli_json_key(&j, "e");
	cli_json_begin_array(&j);
	cli_json_end_array(&j);
	cli_json_key(&j, "s");
	cli_json_string(&j, NULL);
	cli_json_end_object(&j);
	cli_json_finish(&j);
	s = mem_text(&m);
	assert_false(j.broken);
	assert_string_equal(s, "{\n"
			       "  \"a\": 18446744073709551615,\n"
			       "  \"b\": [\n"
			       "    -3,\n"
			       "    true,\n"
			       "    null,\n"
			       "    null\n"
			       "  ],\n"
			       "  \"e\": [],\n"
			       "  \"s\": \"\"\n"
			       "}\n");
	free(s);
	mem_open(&m);
	cli_json_init_compact(&j, m.f);
	cli_json_begin_object(&j);
	cli_json_key(&j, "k");
	cli_json_string(&j, "v");
	cli_json_key(&j, "n");
	cli_json_uint(&j, 1);
	cli_json_end_object(&j);
	cli_json_end_object(&j); /* one too many */
	cli_json_finish(&j);
	s = mem_text(&m);
	assert_true(j.broken);
	assert_string_equal(s, "{\"k\":\"v\",\"n\":1}\n");
	free(s);
}

static void test_pb_json(void **state)
{
	Canopy__V1__Host h = CANOPY__V1__HOST__INIT;
	Canopy__V1__Task t = CANOPY__V1__TASK__INIT;
	char ds1[] = "ds1", ds2[] = "d\"2", id[] = "h1";
	char *ds[] = { ds1, ds2 };
	uint32_t feats[] = { 0x178bfbff, 0 };
	struct cli_json j;
	struct mem m;
	char *s;

	h.id = id;
	h.state = CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED;
	h.memory_mib = UINT64_C(1) << 40;
	h.n_datastores = 2;
	h.datastores = ds;
	h.n_cpu_features = 2;
	h.cpu_features = feats;
	mem_open(&m);
	cli_json_init_compact(&j, m.f);
	cli_pb_json(&j, &h.base);
	cli_json_finish(&j);
	s = mem_text(&m);
	assert_string_equal(
		s, "{\"id\":\"h1\",\"hostname\":\"\",\"state\":"
		   "\"HOST_STATE_CONNECTED\",\"cpus\":0,\"memory_mib\":"
		   "1099511627776,\"memory_used_mib\":0,\"vms\":0,\"address\":"
		   "\"\",\"version\":\"\",\"last_seen_unix_ms\":0,"
		   "\"datastores\":[\"ds1\",\"d\\\"2\"],"
		   "\"cpu_features\":[395049983,0]}\n");
	free(s);
	/* An unknown enum value is a number; an absent message is null. */
	t.state = 77;
	mem_open(&m);
	cli_json_init_compact(&j, m.f);
	cli_pb_json(&j, &t.base);
	cli_json_finish(&j);
	s = mem_text(&m);
	assert_non_null(strstr(s, "\"state\":77,"));
	assert_non_null(strstr(s, "\"error\":null,"));
	free(s);
	assert_string_equal(
		cli_pb_enum_name(&canopy__v1__task_state__descriptor, 3),
		"TASK_STATE_SUCCEEDED");
	assert_null(cli_pb_enum_name(&canopy__v1__task_state__descriptor, 99));
}

static void test_console_escape(void **state)
{
	const uint8_t in[] = "ok\x1b[2J\t\r\n\x00\x7f\x80\xff~ \\";
	char out[4 * sizeof(in) + 1], small[8];
	uint8_t all[256];
	char big[4 * 256 + 1];
	size_t n, i;

	(void)state;
	n = cli_console_escape(out, sizeof(out), in, sizeof(in) - 1);
	assert_string_equal(out, "ok\\x1b[2J\t\r\n\\x00\\x7f\\x80"
				 "\\xff~ \\");
	assert_int_equal(n, strlen(out));
	/* Every byte value: only printable ASCII and \t \r \n come out. */
	for (i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	n = cli_console_escape(big, sizeof(big), all, sizeof(all));
	assert_int_equal(n, strlen(big));
	for (i = 0; i < n; i++)
		assert_true((big[i] >= 0x20 && big[i] < 0x7f) ||
			    big[i] == '\t' || big[i] == '\r' || big[i] == '\n');
	/* Too small: stops before an escape would be cut, NUL-terminated. */
	n = cli_console_escape(small, sizeof(small),
			       (const uint8_t *)"a\x01"
						"bcd",
			       5);
	assert_string_equal(small, "a\\x01bc"); /* 7 bytes and the NUL */
	assert_int_equal(n, 7);
	n = cli_console_escape(small, sizeof(small),
			       (const uint8_t *)"abcd\x01", 5);
	assert_string_equal(small, "abcd"); /* "\\x01" does not fit */
	assert_int_equal(n, 4);
	n = cli_console_escape(small, 4, (const uint8_t *)"\x01", 1);
	assert_string_equal(small, "");
	assert_int_equal(n, 0);
	assert_int_equal(cli_console_escape(small, 0, in, 3), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_alignment),
		cmocka_unit_test(test_table_empty_and_many),
		cmocka_unit_test(test_text_clean),
		cmocka_unit_test(test_kv),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_ages_and_durations),
		cmocka_unit_test(test_enum_and_bar),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_writer),
		cmocka_unit_test(test_pb_json),
		cmocka_unit_test(test_console_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
