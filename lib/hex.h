/* Lowercase hexadecimal encoding of byte strings (keys, salts, MACs). */
#ifndef CANOPY_LIB_HEX_H
#define CANOPY_LIB_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

/* Writes 2n lowercase hex digits of b[0..n) and a NUL to out (2n+1 bytes). */
void cn_hex_encode(char *out, const uint8_t *b, size_t n);

/*
 * Reads exactly 2n hex digits (lower or upper case) from s into b[0..n).
 * The digit after them is not looked at: the caller checks what follows.
 * Returns 0 or -EINVAL (a non-hex character among the 2n, or s too short).
 */
int cn_hex_decode(const char *s, uint8_t *b, size_t n) CN_MUST_CHECK;

#endif
