/* A daemon's command line and --config file from one option table. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "lib/opts.h"

/* getopt values of the options opt_parse adds; table entries are
 * OPT_VAL_BASE + index. */
enum { OPT_VAL_CONFIG = 256, OPT_VAL_HELP, OPT_VAL_BASE };

/* What one parse has seen. */
struct seen {
	const char *config; /* --config FILE */
	bool given[OPT_DEFS_MAX]; /* table entry i on the command line */
	size_t n; /* table entries */
};

/* getopt's table from ours: every entry, then --config and --help. */
static int long_opts(const struct opt_prog *p, struct option *lo, size_t *n)
{
	size_t i;

	for (i = 0; p->defs[i].name; i++) {
		if (i == OPT_DEFS_MAX) {
			fprintf(stderr, "%s: more than %d options\n", p->name,
				OPT_DEFS_MAX);
			return -E2BIG;
		}
		lo[i] = (struct option){
			.name = p->defs[i].name,
			.has_arg = p->defs[i].kind == OPT_BOOL ?
					   no_argument :
					   required_argument,
			.val = OPT_VAL_BASE + (int)i,
		};
	}
	*n = i;
	lo[i++] = (struct option){ "config", required_argument, NULL,
				   OPT_VAL_CONFIG };
	lo[i++] = (struct option){ "help", no_argument, NULL, OPT_VAL_HELP };
	lo[i] = (struct option){ 0 };
	return 0;
}

/* Field at offset off of base. */
static void *field(void *base, size_t off)
{
	return (char *)base + off;
}

/* One option from the command line. */
static int take(const struct opt_prog *p, const struct opt_def *d, void *base,
		const char *val)
{
	switch (d->kind) {
	case OPT_STRING:
		*(const char **)field(base, d->off) = val;
		return 0;
	case OPT_BOOL:
		*(int *)field(base, d->off) = 1;
		return 0;
	case OPT_CALL:
		return p->handle(base, d->id, val, false);
	}
	return -EINVAL;
}

static int parse_argv(const struct opt_prog *p, int argc, char **argv,
		      void *base, struct seen *s)
{
	struct option lo[OPT_DEFS_MAX + 3];
	int c, rc;

	rc = long_opts(p, lo, &s->n);
	if (rc)
		return rc;
	optind = 0; /* glibc: start afresh */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == OPT_VAL_HELP) {
			fputs(p->usage, stdout);
			return OPT_HELP;
		}
		if (c == OPT_VAL_CONFIG) {
			s->config = optarg;
			continue;
		}
		if (c < OPT_VAL_BASE || c >= OPT_VAL_BASE + (int)s->n) {
			fputs(p->usage, stderr);
			return -EINVAL;
		}
		s->given[c - OPT_VAL_BASE] = true;
		rc = take(p, &p->defs[c - OPT_VAL_BASE], base, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n%s", p->name,
			argv[optind], p->usage);
		return -EINVAL;
	}
	return 0;
}

/* One key of the config file for an option the command line left unset. */
static int fill(const struct opt_prog *p, const struct opt_def *d,
		const struct config *c, void *base)
{
	const char *v = config_get(c, d->name);
	char err[512];
	int rc;

	if (!v)
		return 0;
	switch (d->kind) {
	case OPT_STRING:
		*(const char **)field(base, d->off) = v;
		return 0;
	case OPT_BOOL:
		rc = config_get_bool(c, d->name, (int *)field(base, d->off),
				     err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "%s: %s\n", p->name, err);
		return rc;
	case OPT_CALL:
		return p->handle(base, d->id, v, true);
	}
	return -EINVAL;
}

static int apply_config(const struct opt_prog *p, const struct seen *s,
			void *base, struct config **keep)
{
	const char *keys[OPT_DEFS_MAX + 1];
	char err[512];
	size_t i, n = 0;
	int rc;

	for (i = 0; i < s->n; i++)
		if (!p->defs[i].no_config)
			keys[n++] = p->defs[i].name;
	keys[n] = NULL;
	rc = config_load(s->config, keep, err, sizeof(err));
	if (rc == 0)
		rc = config_check_keys(*keep, keys, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", p->name, err);
		return rc;
	}
	for (i = 0; i < s->n; i++) {
		if (p->defs[i].no_config || s->given[i])
			continue;
		rc = fill(p, &p->defs[i], *keep, base);
		if (rc)
			return rc;
	}
	return 0;
}

int opt_parse(const struct opt_prog *p, int argc, char **argv, void *base,
	      struct config **keep)
{
	struct seen s = { 0 };
	int rc;

	*keep = NULL;
	rc = parse_argv(p, argc, argv, base, &s);
	if (rc || !s.config)
		return rc;
	return apply_config(p, &s, base, keep);
}
