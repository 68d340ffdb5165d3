/* JSON string escaping, shared by the CLI's writer and the manager's audit records. */
#ifndef CANOPY_LIB_JSON_ESC_H
#define CANOPY_LIB_JSON_ESC_H

#include <stddef.h>
#include <stdio.h>

/*
 * Writes s[0..len) to f as a quoted JSON string: quote, backslash and
 * control characters escaped, valid UTF-8 copied, every invalid byte
 * replaced by U+FFFD. The output never holds a raw newline or tab, so it
 * fits in one line of a line-based file.
 */
void cn_json_escape(FILE *f, const char *s, size_t len);

#endif
