/* A small `key = value` config file reader with file:line error messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/config.h"
#include "lib/sys.h"

/* Longest piece of bad input quoted back in a message. */
#define CONFIG_QUOTE_MAX 40

struct config_entry {
	char *key;
	char *value;
	unsigned line;
};

struct config {
	char *name;
	struct config_entry *e;
	size_t n, cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	CN_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Quote s (n bytes) for a message: control characters escaped, long input
 * cut with "...". */
static void quote(char *out, size_t outlen, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 8 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == CONFIG_QUOTE_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x",
					      c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

static int is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static int add_entry(struct config *c, char *key, char *value, unsigned line)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct config_entry *e = realloc(c->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		c->e = e;
		c->cap = cap;
	}
	c->e[c->n++] = (struct config_entry){ key, value, line };
	return 0;
}

/* Decode a double-quoted value starting after the opening quote. On
 * success *out is malloc'd and *rest points after the closing quote. */
static int parse_quoted(const char *p, const char *end, char **out,
			const char **rest, const char **why)
{
	char *v = malloc((size_t)(end - p) + 1);
	size_t n = 0;

	if (!v)
		return -ENOMEM;
	for (; p < end && *p != '"'; p++) {
		if (*p != '\\') {
			v[n++] = *p;
			continue;
		}
		if (++p == end)
			break;
		if (*p == 'n')
			v[n++] = '\n';
		else if (*p == '"' || *p == '\\')
			v[n++] = *p;
		else {
			free(v);
			*why = "unknown escape (use \\\", \\\\ or \\n)";
			return -EINVAL;
		}
	}
	if (p == end) {
		free(v);
		*why = "unterminated quoted value";
		return -EINVAL;
	}
	v[n] = '\0';
	*out = v;
	*rest = p + 1;
	return 0;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* The value part of a line: quoted or bare (trailing comment and blanks
 * removed). */
static int parse_value(const char *p, const char *end, char **out,
		       const char **why)
{
	const char *rest;
	int rc;

	p = skip_ws(p, end);
	if (p < end && *p == '"') {
		rc = parse_quoted(p + 1, end, out, &rest, why);
		if (rc < 0)
			return rc;
		rest = skip_ws(rest, end);
		if (rest < end && *rest != '#') {
			free(*out);
			*why = "text after the closing quote";
			return -EINVAL;
		}
		return 0;
	}
	for (const char *h = p; h < end; h++)
		if (*h == '#' && (h == p || h[-1] == ' ' || h[-1] == '\t')) {
			end = h;
			break;
		}
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*out = strndup(p, (size_t)(end - p));
	return *out ? 0 : -ENOMEM;
}

static int find(const struct config *c, const char *key)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].key, key) == 0)
			return (int)i;
	return -1;
}

/* One line (without its newline). 0, or -errno with err set. */
static int parse_line(struct config *c, const char *p, const char *end,
		      unsigned line, char *err, size_t errlen)
{
	const char *k, *why = NULL;
	char q[CONFIG_QUOTE_MAX * 4 + 8], *key, *value;
	size_t klen;
	int rc, dup;

	p = skip_ws(p, end);
	if (p == end || *p == '#' || (end - p == 1 && *p == '\r'))
		return 0;
	if (end[-1] == '\r')
		end--;
	k = p;
	while (p < end && is_key_char(*p))
		p++;
	klen = (size_t)(p - k);
	p = skip_ws(p, end);
	if (klen == 0 || p == end || *p != '=') {
		quote(q, sizeof(q), k, (size_t)(end - k));
		set_err(err, errlen,
			"%s:%u: expected 'key = value', got \"%s\"", c->name,
			line, q);
		return -EINVAL;
	}
	if (klen >= CONFIG_KEY_MAX) {
		set_err(err, errlen, "%s:%u: key longer than %d characters",
			c->name, line, CONFIG_KEY_MAX - 1);
		return -EINVAL;
	}
	rc = parse_value(p + 1, end, &value, &why);
	if (rc == -EINVAL)
		set_err(err, errlen, "%s:%u: %.*s: %s", c->name, line,
			(int)klen, k, why);
	if (rc < 0)
		return rc;
	key = strndup(k, klen);
	dup = key ? find(c, key) : -1;
	if (dup >= 0) {
		set_err(err, errlen,
			"%s:%u: duplicate key '%s' (first set on line %u)",
			c->name, line, key, c->e[dup].line);
		rc = -EINVAL;
	} else if (c->n >= CONFIG_ENTRIES_MAX) {
		set_err(err, errlen, "%s:%u: more than %d entries", c->name,
			line, CONFIG_ENTRIES_MAX);
		rc = -E2BIG;
	} else {
		rc = key ? add_entry(c, key, value, line) : -ENOMEM;
	}
	if (rc < 0) {
		free(key);
		free(value);
	}
	return rc;
}

static int parse_text(struct config *c, const char *text, size_t len, char *err,
		      size_t errlen)
{
	const char *p = text, *end = text + len;
	unsigned line = 1;
	int rc;

	if (memchr(text, '\0', len)) {
		const char *z = memchr(text, '\0', len);

		for (const char *s = text; s < z; s++)
			line += *s == '\n';
		set_err(err, errlen, "%s:%u: NUL byte in a text file", c->name,
			line);
		return -EINVAL;
	}
	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		if (le - p > CONFIG_LINE_MAX) {
			set_err(err, errlen,
				"%s:%u: line longer than %d characters",
				c->name, line, CONFIG_LINE_MAX);
			return -EINVAL;
		}
		rc = parse_line(c, p, le, line, err, errlen);
		if (rc < 0)
			return rc;
		p = nl ? nl + 1 : end;
	}
	return 0;
}

int config_parse(const char *name, const char *text, size_t len,
		 struct config **out, char *err, size_t errlen)
{
	struct config *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c || !(c->name = strdup(name ? name : "<config>"))) {
		free(c);
		set_err(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	if (len > CONFIG_FILE_MAX) {
		set_err(err, errlen, "%s: larger than %u bytes", c->name,
			CONFIG_FILE_MAX);
		config_free(c);
		return -EFBIG;
	}
	rc = parse_text(c, text, len, err, errlen);
	if (rc < 0) {
		config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int rc = sys_read_file(path, CONFIG_FILE_MAX, &text, &len);

	*out = NULL;
	if (rc == -EFBIG || rc == -EMSGSIZE) {
		set_err(err, errlen, "%s: larger than %u bytes", path,
			CONFIG_FILE_MAX);
		return -EFBIG;
	}
	if (rc < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	rc = config_parse(path, text, len, out, err, errlen);
	free(text);
	return rc;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].key);
		free(c->e[i].value);
	}
	free(c->e);
	free(c->name);
	free(c);
}

size_t config_count(const struct config *c)
{
	return c->n;
}

const char *config_key(const struct config *c, size_t i)
{
	return i < c->n ? c->e[i].key : NULL;
}

const char *config_value(const struct config *c, size_t i)
{
	return i < c->n ? c->e[i].value : NULL;
}

const char *config_get(const struct config *c, const char *key)
{
	int i = find(c, key);

	return i >= 0 ? c->e[i].value : NULL;
}

/* Parse an unsigned decimal or 0x number with an optional size suffix. */
static int parse_number(const char *s, int sizes, uint64_t *out)
{
	unsigned long long v;
	uint64_t mul = 1;
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (end == s)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	if (*end && sizes) {
		static const char *const suf[] = { "K", "M", "G" };

		for (unsigned i = 0; i < 3; i++) {
			const char *rest = end + 1;

			if (strncasecmp(end, suf[i], 1) != 0)
				continue;
			if (!strcasecmp(rest, "") || !strcasecmp(rest, "iB") ||
			    !strcasecmp(rest, "B")) {
				mul = 1ull << (10 * (i + 1));
				end += strlen(end);
			}
			break;
		}
	}
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = (uint64_t)v * mul;
	return 0;
}

static int get_number(const struct config *c, const char *key, uint64_t min,
		      uint64_t max, uint64_t *out, int sizes, char *err,
		      size_t errlen)
{
	int i = find(c, key), rc;
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	uint64_t v;

	if (i < 0)
		return -ENOENT;
	rc = parse_number(c->e[i].value, sizes, &v);
	if (rc == -EINVAL) {
		quote(q, sizeof(q), c->e[i].value, strlen(c->e[i].value));
		set_err(err, errlen, "%s:%u: %s: '%s' is not a %s", c->name,
			c->e[i].line, key, q, sizes ? "size" : "number");
		return rc;
	}
	if (rc == 0 && (v < min || v > max))
		rc = -ERANGE;
	if (rc == -ERANGE) {
		set_err(err, errlen,
			"%s:%u: %s: %s is out of range (%llu..%llu)", c->name,
			c->e[i].line, key, c->e[i].value,
			(unsigned long long)min, (unsigned long long)max);
		return rc;
	}
	*out = v;
	return 0;
}

int config_get_u64(const struct config *c, const char *key, uint64_t min,
		   uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	return get_number(c, key, min, max, out, 0, err, errlen);
}

int config_get_size(const struct config *c, const char *key, uint64_t min,
		    uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	return get_number(c, key, min, max, out, 1, err, errlen);
}

int config_get_bool(const struct config *c, const char *key, int *out,
		    char *err, size_t errlen)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	int i = find(c, key);

	if (i < 0)
		return -ENOENT;
	for (unsigned k = 0; k < 4; k++) {
		if (!strcasecmp(c->e[i].value, yes[k])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(c->e[i].value, no[k])) {
			*out = 0;
			return 0;
		}
	}
	quote(q, sizeof(q), c->e[i].value, strlen(c->e[i].value));
	set_err(err, errlen,
		"%s:%u: %s: '%s' is not a boolean (true/false, yes/no, "
		"on/off, 1/0)",
		c->name, c->e[i].line, key, q);
	return -EINVAL;
}

int config_check_keys(const struct config *c, const char *const *allowed,
		      char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n; i++) {
		size_t k = 0;

		while (allowed[k] && strcmp(allowed[k], c->e[i].key) != 0)
			k++;
		if (!allowed[k]) {
			set_err(err, errlen, "%s:%u: unknown key '%s'", c->name,
				c->e[i].line, c->e[i].key);
			return -EINVAL;
		}
	}
	return 0;
}
