/*
 * Growable byte buffers. A buffer owns its memory; data lives in
 * [data + off, data + off + len). Appends grow the storage geometrically up
 * to a hard limit (`max`, 0 = BUF_DEFAULT_MAX) so a hostile peer cannot make
 * us allocate without bound. Not thread-safe: one owner at a time.
 */
#ifndef CANOPY_LIB_BUF_H
#define CANOPY_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "lib/compiler.h"

/* Default growth limit: 64 MiB. */
#define BUF_DEFAULT_MAX (64u << 20)

struct buf {
	char *data; /* storage, NULL until the first append */
	size_t off; /* start of unconsumed data */
	size_t len; /* bytes of data from off */
	size_t cap; /* allocated bytes */
	size_t max; /* growth limit for len and cap (0 = BUF_DEFAULT_MAX) */
};

/* An empty buffer with growth limit max (0 for the default). */
void buf_init(struct buf *b, size_t max);
/* Free the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Drop all data, keep the storage. */
void buf_reset(struct buf *b);
/* Pointer to the first unconsumed byte (may be NULL when empty). */
static inline char *buf_ptr(const struct buf *b)
{
	return b->data ? b->data + b->off : NULL;
}
static inline size_t buf_len(const struct buf *b)
{
	return b->len;
}
/* Make room for `more` bytes after the data; returns a pointer to that room
 * or NULL with *err = -ENOMEM / -EMSGSIZE (limit). Compacts before growing. */
CN_MUST_CHECK char *buf_reserve(struct buf *b, size_t more, int *err);
/* Mark n bytes of reserved room as data (after writing into it). */
void buf_commit(struct buf *b, size_t n);
/* Append bytes / a formatted string (no NUL stored). 0 or -ENOMEM/-EMSGSIZE. */
CN_MUST_CHECK int buf_append(struct buf *b, const void *p, size_t n);
CN_MUST_CHECK int buf_printf(struct buf *b, const char *fmt, ...)
	CN_PRINTF(2, 3);
CN_MUST_CHECK int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	CN_PRINTF(2, 0);
/* Drop n bytes from the front (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* NUL-terminate the data without counting the NUL (for string use). */
CN_MUST_CHECK int buf_cstr(struct buf *b, const char **out);

#endif
