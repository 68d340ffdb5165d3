/* Growable byte buffers with a hard growth limit. */
#include "lib/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation size. */
#define BUF_MIN_CAP 256

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max ? max : BUF_DEFAULT_MAX;
}

void buf_free(struct buf *b)
{
	size_t max = b->max;

	free(b->data);
	buf_init(b, max);
}

void buf_reset(struct buf *b)
{
	b->off = 0;
	b->len = 0;
}

static size_t limit(const struct buf *b)
{
	return b->max ? b->max : BUF_DEFAULT_MAX;
}

char *buf_reserve(struct buf *b, size_t more, int *err)
{
	size_t need, cap;
	char *p;

	if (more > limit(b) || b->len > limit(b) - more) {
		*err = -EMSGSIZE;
		return NULL;
	}
	need = b->len + more;
	if (b->off + need <= b->cap)
		return b->data + b->off + b->len;
	/* Compact first: consumed bytes at the front are free room. */
	if (b->off && need <= b->cap) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		return b->data + b->len;
	}
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > limit(b) / 2 ? limit(b) : cap * 2;
	/* need <= limit, so clamping keeps cap >= need. */
	if (cap > limit(b))
		cap = limit(b);
	if (b->off) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	p = realloc(b->data, cap);
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	b->data = p;
	b->cap = cap;
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	/* Callers commit at most what they reserved. */
	b->len += n;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int err = 0;
	char *dst;

	if (n == 0)
		return 0;
	dst = buf_reserve(b, n, &err);
	if (!dst)
		return err;
	memcpy(dst, p, n);
	b->len += n;
	return 0;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n, err = 0;
	char *dst;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	/* Room for vsnprintf's NUL, which is not counted as data. */
	dst = buf_reserve(b, (size_t)n + 1, &err);
	if (!dst)
		return err;
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int err;

	va_start(ap, fmt);
	err = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = 0;
		b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
}

int buf_cstr(struct buf *b, const char **out)
{
	int err = 0;
	char *end = buf_reserve(b, 1, &err);

	if (!end)
		return err;
	*end = '\0';
	*out = buf_ptr(b);
	return 0;
}
