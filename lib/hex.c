/* Lowercase hexadecimal encoding and decoding of byte strings. */
#include <errno.h>

#include "lib/hex.h"

void cn_hex_encode(char *out, const uint8_t *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cn_hex_decode(const char *s, uint8_t *b, size_t n)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		/* A NUL is not a digit, so a short s stops here. */
		hi = digit(s[2 * i]);
		if (hi < 0)
			return -EINVAL;
		lo = digit(s[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
