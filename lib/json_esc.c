/* JSON string escaping: quoted, control characters escaped, invalid UTF-8 replaced. */
#include <stdint.h>

#include "lib/json_esc.h"

void cn_json_escape(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, l, k;
	uint32_t cp;

	fputc('"', f);
	while (i < len) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c == '\n') {
			fputs("\\n", f);
			i++;
		} else if (c == '\t') {
			fputs("\\t", f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			fputc(c, f);
			i++;
		} else {
			/* Validate one multi-byte sequence. */
			l = (c & 0xe0) == 0xc0 ? 2 :
			    (c & 0xf0) == 0xe0 ? 3 :
			    (c & 0xf8) == 0xf0 ? 4 :
						 0;
			cp = l == 2 ? c & 0x1fu :
			     l == 3 ? c & 0x0fu :
				      c & 0x07u;
			for (k = 1; l && k < l; k++) {
				if (i + k >= len || (p[i + k] & 0xc0) != 0x80) {
					l = 0;
					break;
				}
				cp = (cp << 6) | (p[i + k] & 0x3fu);
			}
			if (l &&
			    ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) ||
			     (l == 4 && cp < 0x10000) || cp > 0x10ffff ||
			     (cp >= 0xd800 && cp <= 0xdfff)))
				l = 0;
			if (!l) {
				fputs("\\ufffd", f);
				i++;
			} else {
				fwrite(p + i, 1, l, f);
				i += l;
			}
		}
	}
	fputc('"', f);
}
