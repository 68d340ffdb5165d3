/*
 * Output of the canopy CLI: aligned tables and "key: value" blocks for
 * people, a JSON writer for scripts, and the small formatters both use
 * (sizes as MiB/GiB, ages as "5s ago", progress bars). Text from the server
 * is untrusted: tables print control characters as '?', JSON escapes them
 * and replaces invalid UTF-8 with U+FFFD. Pure code writing to a FILE *
 * (tests write to a memory stream); single-threaded.
 */
#ifndef CANOPY_CLI_OUT_H
#define CANOPY_CLI_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/compiler.h"

/* Most columns of a table. */
#define CLI_TABLE_COLS_MAX 12
/* Widest cell printed (longer cells are cut and end in "..."). */
#define CLI_CELL_MAX 64
/* Deepest JSON nesting the writer tracks. */
#define CLI_JSON_DEPTH_MAX 16

/* A table: headers, then rows of cells (copied). */
struct cli_table {
	size_t ncols;
	const char *hdr[CLI_TABLE_COLS_MAX];
	char **cells; /* nrows * ncols strings */
	size_t nrows, cap;
};

/* Start a table with n headers (static strings). */
void cli_table_init(struct cli_table *t, size_t n, const char *const *hdr);
/* Append a row of exactly ncols cells (copied; NULL prints as "").
 * 0 or -ENOMEM. */
CN_MUST_CHECK int cli_table_add(struct cli_table *t, const char *const *cells);
/* Print headers and rows, columns aligned by display width and separated
 * by two spaces, no trailing spaces. */
void cli_table_print(const struct cli_table *t, FILE *f);
void cli_table_free(struct cli_table *t);

/* Print "key:   value" lines aligned on the longest key (n pairs); an
 * empty key continues the value above on a line of its own. */
void cli_kv_print(FILE *f, size_t n, const char *const *keys,
		  const char *const *vals);

/* Copy untrusted text for a terminal: control characters (and DEL) become
 * '?', at most max display characters, longer text ends in "...". */
void cli_text_clean(char *dst, size_t size, const char *src, size_t max);
/* Copy n bytes of untrusted console output for a terminal: printable
 * ASCII, \n, \r and \t as they are, every other byte (controls, DEL,
 * bytes >= 0x80) as "\xNN". Stops before dst (size bytes, NUL-terminated)
 * would overflow; 4 * n + 1 bytes always suffice. Returns the length. */
size_t cli_console_escape(char *dst, size_t size, const uint8_t *src, size_t n);
/* Display width of UTF-8 text (code points; invalid bytes count one). */
size_t cli_text_width(const char *s);

/* "512 MiB", "1.5 GiB", "2.0 TiB" for a number of MiB. */
void cli_fmt_mib(char *buf, size_t size, uint64_t mib);
/* The same for bytes: "4.0 KiB", "10 GiB", "512 B". */
void cli_fmt_bytes(char *buf, size_t size, uint64_t bytes);
/* Age of unix_ms at now_ms: "5s ago", "3m ago", "2h ago", "4d ago",
 * "-" when unix_ms is 0, "just now" when in the future. */
void cli_fmt_age(char *buf, size_t size, uint64_t unix_ms, uint64_t now_ms);
/* A duration in ms: "850ms", "12.3s", "4m05s", "2h10m". */
void cli_fmt_duration(char *buf, size_t size, uint64_t ms);
/* Lower-case enum name without its prefix: ("HOST_STATE_CONNECTED",
 * "HOST_STATE_") -> "connected"; "-" for "..._UNSPECIFIED" or NULL. */
void cli_fmt_enum(char *buf, size_t size, const char *name, const char *prefix);
/* A progress bar "[#######.............]  35%" of width cells. */
void cli_fmt_bar(char *buf, size_t size, unsigned percent, unsigned width);

/* A streaming JSON writer, indented by two spaces. Keys and strings are
 * escaped; invalid UTF-8 becomes U+FFFD. Nesting deeper than
 * CLI_JSON_DEPTH_MAX is a programming error and sets `broken`. */
struct cli_json {
	FILE *f;
	int depth;
	bool first[CLI_JSON_DEPTH_MAX]; /* nothing written yet at this level */
	bool after_key;
	bool compact; /* one line, no indentation */
	bool broken;
};

void cli_json_init(struct cli_json *j, FILE *f);
/* The same, writing everything on one line (JSON Lines). */
void cli_json_init_compact(struct cli_json *j, FILE *f);
void cli_json_begin_object(struct cli_json *j);
void cli_json_end_object(struct cli_json *j);
void cli_json_begin_array(struct cli_json *j);
void cli_json_end_array(struct cli_json *j);
void cli_json_key(struct cli_json *j, const char *key);
void cli_json_string(struct cli_json *j, const char *s);
/* len bytes of s (may hold NULs, escaped as \u0000). */
void cli_json_string_len(struct cli_json *j, const char *s, size_t len);
void cli_json_uint(struct cli_json *j, uint64_t v);
void cli_json_int(struct cli_json *j, int64_t v);
void cli_json_double(struct cli_json *j, double v);
void cli_json_bool(struct cli_json *j, bool v);
void cli_json_null(struct cli_json *j);
/* End the document with a newline. */
void cli_json_finish(struct cli_json *j);

#endif
