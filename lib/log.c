/* Structured key=value logging with escaping and redaction of secrets. */
#include "lib/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/sys.h"

static _Atomic int log_level = LOG_INFO;
static _Atomic int log_fd = STDERR_FILENO;
/* Whether log_fd was opened by log_open_file (and so is ours to close). */
static _Atomic int log_fd_owned;

static const char *const level_names[] = { "debug", "info", "warn", "error",
					   "off" };

/* Field keys whose values are never written (case-insensitive substrings). */
static const char *const secret_words[] = {
	"password",   "passwd",	       "secret",      "token",
	"credential", "privkey",       "private_key", "api_key",
	"apikey",     "authorization", "cookie",
};

void log_set_level(enum log_level level)
{
	if (level > LOG_OFF)
		level = LOG_OFF;
	atomic_store(&log_level, (int)level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load(&log_level);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < CN_ARRAY_SIZE(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

static void set_sink(int fd, int owned)
{
	int old = atomic_exchange(&log_fd, fd);
	int old_owned = atomic_exchange(&log_fd_owned, owned);

	if (old_owned && old != fd)
		sys_close(old);
}

int log_open_file(const char *path)
{
	int fd;

	if (!path) {
		set_sink(STDERR_FILENO, 0);
		return 0;
	}
	fd = sys_open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0)
		return fd;
	set_sink(fd, 1);
	return 0;
}

void log_set_fd(int fd)
{
	set_sink(fd, 0);
}

int log_enabled(enum log_level level)
{
	return level < LOG_OFF && (int)level >= atomic_load(&log_level);
}

/* A small bounded writer: never overflows, remembers truncation. */
struct out {
	char *p;
	int n, len, cut;
};

static void put(struct out *o, char c)
{
	/* Keep room for "...\n" and the NUL. */
	if (o->len < o->n - 5)
		o->p[o->len++] = c;
	else
		o->cut = 1;
}

static void puts_raw(struct out *o, const char *s)
{
	while (*s)
		put(o, *s++);
}

/* Copy one character, escaping what could forge or break a line. */
static void put_safe(struct out *o, unsigned char c, int in_quotes)
{
	static const char hex[] = "0123456789abcdef";

	if (c < 0x20 || c == 0x7f) {
		put(o, '\\');
		put(o, 'x');
		put(o, hex[c >> 4]);
		put(o, hex[c & 15]);
	} else if (in_quotes && (c == '"' || c == '\\')) {
		put(o, '\\');
		put(o, (char)c);
	} else {
		put(o, (char)c);
	}
}

static int is_secret_key(const char *k, size_t n)
{
	char low[64];

	if (n >= sizeof(low))
		n = sizeof(low) - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)k[i]);
	low[n] = '\0';
	for (size_t i = 0; i < CN_ARRAY_SIZE(secret_words); i++)
		if (strstr(low, secret_words[i]))
			return 1;
	return 0;
}

/* Length of the value starting at v: a quoted string (with \-escapes) or
 * everything up to the next space. */
static size_t value_len(const char *v)
{
	size_t i = 0;

	if (v[0] != '"')
		return strcspn(v, " ");
	for (i = 1; v[i] && v[i] != '"'; i++)
		if (v[i] == '\\' && v[i + 1])
			i++;
	return v[i] == '"' ? i + 1 : i;
}

/* Append the formatted fields, escaping control characters and replacing
 * the values of secret keys. */
static void put_fields(struct out *o, const char *kv)
{
	while (*kv) {
		size_t klen, vlen;
		const char *eq;

		if (*kv == ' ') {
			put(o, ' ');
			kv++;
			continue;
		}
		klen = strcspn(kv, "= ");
		eq = kv[klen] == '=' ? kv + klen : NULL;
		vlen = eq ? value_len(eq + 1) : 0;
		if (eq && is_secret_key(kv, klen)) {
			for (size_t i = 0; i <= klen; i++)
				put_safe(o, (unsigned char)kv[i], 0);
			puts_raw(o, "<redacted>");
			kv = eq + 1 + vlen;
			continue;
		}
		for (size_t i = 0; i < klen + (eq ? 1 + vlen : 0); i++)
			put_safe(o, (unsigned char)kv[i], 0);
		kv += klen + (eq ? 1 + vlen : 0);
	}
}

static void put_time(struct out *o)
{
	struct timespec ts;
	struct tm tm;
	char t[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
	puts_raw(o, t);
}

int log_format(char *outbuf, int n, int with_time, enum log_level level,
	       const char *comp, const char *msg, const char *kvfmt, va_list ap)
{
	struct out o = { .p = outbuf, .n = n };
	char kv[LOG_LINE_MAX];

	if (level > LOG_ERROR)
		level = LOG_ERROR;
	if (with_time)
		put_time(&o);
	puts_raw(&o, "level=");
	puts_raw(&o, level_names[level]);
	puts_raw(&o, " comp=");
	for (const char *c = comp ? comp : "-"; *c; c++)
		put_safe(&o, (unsigned char)(*c == ' ' ? '_' : *c), 0);
	puts_raw(&o, " msg=\"");
	for (const char *c = msg ? msg : ""; *c; c++)
		put_safe(&o, (unsigned char)*c, 1);
	put(&o, '"');
	if (kvfmt && *kvfmt) {
		vsnprintf(kv, sizeof(kv), kvfmt, ap);
		put(&o, ' ');
		put_fields(&o, kv);
	}
	if (o.cut) {
		memcpy(o.p + o.len, "...", 3);
		o.len += 3;
	}
	o.p[o.len++] = '\n';
	o.p[o.len] = '\0';
	return o.len;
}

void log_vwrite(enum log_level level, const char *comp, const char *msg,
		const char *kvfmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int len;

	if (!log_enabled(level))
		return;
	len = log_format(line, sizeof(line), 1, level, comp, msg, kvfmt, ap);
	/* One write(2) per line keeps lines whole between threads. A log
	 * line that cannot be written has nowhere else to go: drop it. */
	if (sys_write_full(atomic_load(&log_fd), line, (size_t)len) < 0)
		return;
}

void log_write(enum log_level level, const char *comp, const char *msg,
	       const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	log_vwrite(level, comp, msg, kvfmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	/* With stderr gone there is nobody left to tell. */
	if (sys_write_full(STDERR_FILENO, line, strlen(line)) < 0)
		_exit(1);
	exit(1);
}
