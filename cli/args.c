/* canopy CLI: option parsing and the value parsers (sizes, disks, servers). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"

/* Largest size accepted: 2^63 bytes. */
#define CLI_SIZE_MAX (UINT64_C(1) << 63)

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
	CN_PRINTF(4, 5);

static int bad(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static int add_defs(struct cli_args *a, const struct cli_optdef *t, char *err,
		    size_t errlen)
{
	for (; t && t->name; t++) {
		if (a->ndefs == CLI_OPTS_MAX)
			return bad(err, errlen, -EINVAL, "too many options");
		a->defs[a->ndefs++] = t;
	}
	return 0;
}

/* Index of the option named by a long name (len bytes) or a short letter. */
static int find_def(const struct cli_args *a, const char *name, size_t len,
		    char shortc)
{
	size_t i;

	for (i = 0; i < a->ndefs; i++) {
		if (shortc && a->defs[i]->shortc == shortc)
			return (int)i;
		if (!shortc && strlen(a->defs[i]->name) == len &&
		    !strncmp(a->defs[i]->name, name, len))
			return (int)i;
	}
	return -1;
}

static int store(struct cli_args *a, int i, const char *val, char *err,
		 size_t errlen)
{
	const struct cli_optdef *d = a->defs[i];

	if (a->count[i] && !d->repeat)
		return bad(err, errlen, -EINVAL, "--%s given twice", d->name);
	if (a->count[i] == CLI_OPT_VALUES_MAX)
		return bad(err, errlen, -EINVAL,
			   "--%s given more than %d times", d->name,
			   CLI_OPT_VALUES_MAX);
	a->vals[i][a->count[i]++] = val;
	return 0;
}

/* One option word at argv[*k]; may consume the next word as its value. */
static int parse_opt(struct cli_args *a, int argc, const char *const *argv,
		     int *k, char *err, size_t errlen)
{
	const char *w = argv[*k], *val = NULL, *eq;
	int i;

	if (w[1] == '-') {
		eq = strchr(w + 2, '=');
		i = find_def(a, w + 2,
			     eq ? (size_t)(eq - w - 2) : strlen(w + 2), 0);
		if (eq)
			val = eq + 1;
	} else {
		i = find_def(a, NULL, 0, w[1]);
		if (w[2])
			val = w + 2;
	}
	if (i < 0)
		return bad(err, errlen, -EINVAL, "unknown option '%s'", w);
	if (!a->defs[i]->has_arg) {
		if (val)
			return bad(err, errlen, -EINVAL,
				   "option --%s takes no value",
				   a->defs[i]->name);
		return store(a, i, "", err, errlen);
	}
	if (!val) {
		if (*k + 1 >= argc)
			return bad(err, errlen, -EINVAL,
				   "option --%s needs a value",
				   a->defs[i]->name);
		val = argv[++*k];
	}
	return store(a, i, val, err, errlen);
}

int cli_args_parse(struct cli_args *a, const struct cli_optdef *cmd,
		   const struct cli_optdef *global, int argc,
		   const char *const *argv, char *err, size_t errlen)
{
	bool opts_done = false;
	int k, rc;

	memset(a, 0, sizeof(*a));
	rc = add_defs(a, cmd, err, errlen);
	if (!rc)
		rc = add_defs(a, global, err, errlen);
	for (k = 0; !rc && k < argc; k++) {
		const char *w = argv[k];

		if (!opts_done && !strcmp(w, "--")) {
			opts_done = true;
		} else if (!opts_done && w[0] == '-' && w[1]) {
			rc = parse_opt(a, argc, argv, &k, err, errlen);
		} else if (a->npos == CLI_POS_MAX) {
			rc = bad(err, errlen, -EINVAL, "too many arguments");
		} else {
			a->pos[a->npos++] = w;
		}
	}
	return rc;
}

static int def_index(const struct cli_args *a, const char *name)
{
	return find_def(a, name, strlen(name), 0);
}

bool cli_args_has(const struct cli_args *a, const char *name)
{
	int i = def_index(a, name);

	return i >= 0 && a->count[i] > 0;
}

const char *cli_args_get(const struct cli_args *a, const char *name)
{
	int i = def_index(a, name);

	if (i < 0 || !a->count[i])
		return NULL;
	return a->vals[i][a->count[i] - 1];
}

const char *const *cli_args_all(const struct cli_args *a, const char *name,
				unsigned *n)
{
	int i = def_index(a, name);

	*n = i < 0 ? 0 : a->count[i];
	return i < 0 ? NULL : a->vals[i];
}

/* The multiplier of a size suffix, 0 if unknown. */
static uint64_t size_unit(const char *s)
{
	static const struct {
		const char *a, *b;
		unsigned shift;
	} units[] = { { "", "B", 0 },
		      { "K", "KiB", 10 },
		      { "M", "MiB", 20 },
		      { "G", "GiB", 30 },
		      { "T", "TiB", 40 } };
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(units); i++)
		if (!strcasecmp(s, units[i].a) || !strcasecmp(s, units[i].b))
			return UINT64_C(1) << units[i].shift;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
	uint64_t v, mul;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return bad(err, errlen, -EINVAL,
			   "'%s' is not a size (examples: 512M, 10G, 4096)", s);
	errno = 0;
	v = strtoull(s, &end, 10);
	mul = size_unit(end);
	if (!mul)
		return bad(err, errlen, -EINVAL,
			   "'%s' is not a size (examples: 512M, 10G, 4096)", s);
	if (errno == ERANGE || v > CLI_SIZE_MAX / mul)
		return bad(err, errlen, -ERANGE, "size '%s' is too large", s);
	*out = v * mul;
	return 0;
}

int cli_parse_uint(const char *what, const char *s, uint64_t min, uint64_t max,
		   uint64_t *out, char *err, size_t errlen)
{
	uint64_t v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return bad(err, errlen, -EINVAL, "%s: '%s' is not a number",
			   what, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return bad(err, errlen, -EINVAL, "%s: '%s' is not a number",
			   what, s);
	if (errno == ERANGE || v < min || v > max)
		return bad(err, errlen, -ERANGE,
			   "%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")",
			   what, s, min, max);
	*out = v;
	return 0;
}

/* Copy a key's value into dst; -EINVAL when it does not fit or is empty. */
static int disk_str(const char *key, const char *v, size_t n, char *dst,
		    size_t size, char *err, size_t errlen)
{
	if (!n || n >= size)
		return bad(err, errlen, -EINVAL,
			   "--disk: %s must be 1 to %zu characters", key,
			   size - 1);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

/* One "key=value" or flag item of a --disk value. */
static int disk_item(const char *it, size_t n, struct cli_disk *d, char *err,
		     size_t errlen)
{
	const char *eq = memchr(it, '=', n);
	size_t klen = eq ? (size_t)(eq - it) : n, vlen = eq ? n - klen - 1 : 0;
	char buf[64];

#define IS(k) (klen == strlen(k) && !strncmp(it, k, klen))
	if (!eq && IS("readonly")) {
		d->readonly = true;
	} else if (!eq && IS("direct")) {
		d->direct = true;
	} else if (eq && IS("path")) {
		return disk_str("path", eq + 1, vlen, d->path, sizeof(d->path),
				err, errlen);
	} else if (eq && IS("serial")) {
		return disk_str("serial", eq + 1, vlen, d->serial,
				sizeof(d->serial), err, errlen);
	} else if (eq && IS("size")) {
		if (disk_str("size", eq + 1, vlen, buf, sizeof(buf), err,
			     errlen))
			return -EINVAL;
		if (cli_parse_size(buf, &d->size_bytes, err, errlen))
			return -EINVAL;
		if (!d->size_bytes)
			return bad(err, errlen, -EINVAL,
				   "--disk: size must be more than 0");
	} else {
		return bad(
			err, errlen, -EINVAL,
			"--disk: unknown item '%.*s' (use size=SIZE, path=P, "
			"readonly, direct, serial=S)",
			(int)CN_MIN(n, (size_t)64), it);
	}
#undef IS
	return 0;
}

int cli_parse_disk(const char *s, struct cli_disk *d, char *err, size_t errlen)
{
	const char *p = s, *comma;
	size_t n;
	int rc;

	memset(d, 0, sizeof(*d));
	for (;;) {
		comma = strchr(p, ',');
		n = comma ? (size_t)(comma - p) : strlen(p);
		if (!n)
			return bad(err, errlen, -EINVAL,
				   "--disk: empty item in '%s'", s);
		rc = disk_item(p, n, d, err, errlen);
		if (rc)
			return rc;
		if (!comma)
			break;
		p = comma + 1;
	}
	if (!d->path[0] && !d->size_bytes)
		return bad(err, errlen, -EINVAL,
			   "--disk: give size=SIZE (a new disk) or path=P (an "
			   "existing file)");
	return 0;
}

int cli_parse_server(const char *s, char *out, size_t outlen, char *err,
		     size_t errlen)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;
	char perr[CLI_ERR_MAX];
	size_t i;

	for (i = 0; s[i]; i++)
		if (!isgraph((unsigned char)s[i]))
			return bad(err, errlen, -EINVAL,
				   "server address must not contain spaces "
				   "or control characters");
	if (!colon || colon == s)
		return bad(err, errlen, -EINVAL,
			   "server '%s' is not HOST:PORT (e.g. 127.0.0.1:7443)",
			   s);
	if (s[0] == '[' && colon[-1] != ']')
		return bad(err, errlen, -EINVAL,
			   "server '%s': IPv6 addresses go in brackets, "
			   "[::1]:7443",
			   s);
	if (cli_parse_uint("port", colon + 1, 1, 65535, &port, perr,
			   sizeof(perr)))
		return bad(err, errlen, -EINVAL, "server '%s': %s", s, perr);
	if (strlen(s) >= outlen)
		return bad(err, errlen, -EINVAL, "server address too long");
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

int cli_parse_server_list(const char *s, char (*out)[CLI_ADDR_MAX], size_t *n,
			  char *err, size_t errlen)
{
	char item[CLI_ADDR_MAX];
	const char *p = s, *comma;
	size_t len;

	*n = 0;
	for (;;) {
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		if (!len)
			return bad(err, errlen, -EINVAL,
				   "empty address in server list '%s'", s);
		if (len >= sizeof(item))
			return bad(err, errlen, -EINVAL,
				   "server address too long");
		if (*n == CLI_SERVERS_MAX)
			return bad(err, errlen, -EINVAL,
				   "more than %d servers in '%s'",
				   CLI_SERVERS_MAX, s);
		memcpy(item, p, len);
		item[len] = '\0';
		if (cli_parse_server(item, out[*n], CLI_ADDR_MAX, err, errlen))
			return -EINVAL;
		++*n;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int cli_parse_seconds(const char *what, const char *s, unsigned *ms, char *err,
		      size_t errlen)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (!isdigit((unsigned char)s[0]) || *end || errno)
		return bad(err, errlen, -EINVAL,
			   "%s: '%s' is not a number of seconds", what, s);
	if (v * 1000.0 < 1.0 || v > 86400.0)
		return bad(err, errlen, -ERANGE,
			   "%s: %s is out of range (0.001..86400 seconds)",
			   what, s);
	*ms = (unsigned)(v * 1000.0 + 0.5);
	return 0;
}
