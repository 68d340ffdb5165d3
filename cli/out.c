/* canopy CLI: tables, key/value blocks, human formatters and the JSON writer. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/out.h"

/* Room for one cleaned cell: CLI_CELL_MAX code points of up to 4 bytes. */
#define CELL_BYTES (CLI_CELL_MAX * 4 + 4)

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

size_t cli_text_width(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), w = 0, l;

	while (n) {
		l = utf8_len(p, n);
		if (!l)
			l = 1;
		p += l;
		n -= l;
		w++;
	}
	return w;
}

void cli_text_clean(char *dst, size_t size, const char *src, size_t max)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t n = strlen(src), o = 0, w = 0, l;

	if (!size)
		return;
	while (n && w < max) {
		l = utf8_len(p, n);
		if (l <= 1) {
			if (o + 1 >= size)
				break;
			dst[o++] = (*p < 0x20 || *p >= 0x7f) ? '?' : (char)*p;
			l = 1;
		} else {
			if (o + l >= size)
				break;
			memcpy(dst + o, p, l);
			o += l;
		}
		p += l;
		n -= l;
		w++;
	}
	if (n && max >= 3 && size >= 4) {
		/* Cut: the last three characters become "...". */
		while (o > 0 && w > max - 3) {
			do
				o--;
			while (o > 0 && ((unsigned char)dst[o] & 0xc0) == 0x80);
			w--;
		}
		if (o + 4 > size)
			o = size - 4;
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

void cli_table_init(struct cli_table *t, size_t n, const char *const *hdr)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	t->ncols = CN_MIN(n, (size_t)CLI_TABLE_COLS_MAX);
	for (i = 0; i < t->ncols; i++)
		t->hdr[i] = hdr[i];
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
	char buf[CELL_BYTES], **grown;
	size_t i, base;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;

		grown = realloc(t->cells, cap * t->ncols * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		t->cells = grown;
		t->cap = cap;
	}
	base = t->nrows * t->ncols;
	for (i = 0; i < t->ncols; i++) {
		cli_text_clean(buf, sizeof(buf), cells[i] ? cells[i] : "",
			       CLI_CELL_MAX);
		t->cells[base + i] = strdup(buf);
		if (!t->cells[base + i]) {
			while (i--)
				free(t->cells[base + i]);
			return -ENOMEM;
		}
	}
	t->nrows++;
	return 0;
}

static void print_row(FILE *f, const struct cli_table *t,
		      const char *const *row, const size_t *w)
{
	size_t i, pad, last = t->ncols;

	/* Cells after the last non-empty one are not padded. */
	while (last > 1 && !row[last - 1][0])
		last--;
	for (i = 0; i < last; i++) {
		fputs(row[i], f);
		if (i + 1 == last)
			break;
		pad = w[i] - cli_text_width(row[i]) + 2;
		while (pad--)
			fputc(' ', f);
	}
	fputc('\n', f);
}

void cli_table_print(const struct cli_table *t, FILE *f)
{
	size_t w[CLI_TABLE_COLS_MAX], r, i, cw;

	for (i = 0; i < t->ncols; i++)
		w[i] = cli_text_width(t->hdr[i]);
	for (r = 0; r < t->nrows; r++)
		for (i = 0; i < t->ncols; i++) {
			cw = cli_text_width(t->cells[r * t->ncols + i]);
			w[i] = CN_MAX(w[i], cw);
		}
	print_row(f, t, t->hdr, w);
	for (r = 0; r < t->nrows; r++)
		print_row(f, t, (const char *const *)t->cells + r * t->ncols,
			  w);
}

void cli_table_free(struct cli_table *t)
{
	size_t i;

	for (i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

void cli_kv_print(FILE *f, size_t n, const char *const *keys,
		  const char *const *vals)
{
	char buf[CELL_BYTES * 4];
	size_t i, w = 0;

	for (i = 0; i < n; i++)
		w = CN_MAX(w, strlen(keys[i]));
	for (i = 0; i < n; i++) {
		cli_text_clean(buf, sizeof(buf), vals[i] ? vals[i] : "",
			       CLI_CELL_MAX * 4);
		/* An empty key continues the previous one's value. */
		fprintf(f, "%s%c%*s%s\n", keys[i], keys[i][0] ? ':' : ' ',
			(int)(w - strlen(keys[i]) + 2), "", buf);
	}
}

/* Value in units of 1024^shift with one decimal below 10, none above. */
static void fmt_scaled(char *buf, size_t size, uint64_t v, const char *unit,
		       unsigned shift)
{
	double x = (double)v / (double)(UINT64_C(1) << shift);

	if (x < 10.0)
		snprintf(buf, size, "%.1f %s", x, unit);
	else
		snprintf(buf, size, "%.0f %s", x, unit);
}

void cli_fmt_bytes(char *buf, size_t size, uint64_t bytes)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB",
					    "TiB", "PiB", "EiB" };
	unsigned i = 0;

	if (bytes < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", bytes);
		return;
	}
	while (i + 1 < CN_ARRAY_SIZE(unit) &&
	       bytes >= (UINT64_C(1) << (10 * (i + 2))))
		i++;
	fmt_scaled(buf, size, bytes, unit[i], 10 * (i + 1));
}

void cli_fmt_mib(char *buf, size_t size, uint64_t mib)
{
	if (mib < 1024)
		snprintf(buf, size, "%" PRIu64 " MiB", mib);
	else if (mib < (UINT64_C(1) << 44))
		cli_fmt_bytes(buf, size, mib << 20);
	else
		snprintf(buf, size, "%" PRIu64 " TiB", mib >> 20);
}

void cli_fmt_age(char *buf, size_t size, uint64_t unix_ms, uint64_t now_ms)
{
	uint64_t s;

	if (!unix_ms) {
		snprintf(buf, size, "-");
		return;
	}
	if (unix_ms >= now_ms) {
		snprintf(buf, size, "just now");
		return;
	}
	s = (now_ms - unix_ms) / 1000;
	if (s < 60)
		snprintf(buf, size, "%" PRIu64 "s ago", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRIu64 "m ago", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRIu64 "h ago", s / 3600);
	else
		snprintf(buf, size, "%" PRIu64 "d ago", s / 86400);
}

void cli_fmt_duration(char *buf, size_t size, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, size, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, size, "%" PRIu64 "m%02" PRIu64 "s", s / 60,
			 s % 60);
	else
		snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
			 s / 60 % 60);
}

void cli_fmt_enum(char *buf, size_t size, const char *name, const char *prefix)
{
	size_t pl = strlen(prefix), i;
	const char *s;

	if (!size)
		return;
	if (!name || strstr(name, "UNSPECIFIED")) {
		snprintf(buf, size, "-");
		return;
	}
	s = strncmp(name, prefix, pl) ? name : name + pl;
	for (i = 0; s[i] && i + 1 < size; i++)
		buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) :
							s[i];
	buf[i] = '\0';
}

void cli_fmt_bar(char *buf, size_t size, unsigned percent, unsigned width)
{
	unsigned fill, i;
	size_t o = 0;

	if (percent > 100)
		percent = 100;
	fill = percent * width / 100;
	if (size < width + 8)
		width = size > 8 ? (unsigned)size - 8 : 0;
	buf[o++] = '[';
	for (i = 0; i < width; i++)
		buf[o++] = i < fill ? '#' : '.';
	snprintf(buf + o, size - o, "] %3u%%", percent);
}

size_t cli_console_escape(char *dst, size_t size, const uint8_t *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;
	uint8_t b;

	if (!size)
		return 0;
	for (i = 0; i < n; i++) {
		b = src[i];
		if ((b >= 0x20 && b < 0x7f) || b == '\n' || b == '\r' ||
		    b == '\t') {
			if (o + 1 >= size)
				break;
			dst[o++] = (char)b;
			continue;
		}
		if (o + 4 >= size)
			break;
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[b >> 4];
		dst[o++] = hex[b & 15];
	}
	dst[o] = '\0';
	return o;
}
