/* canopy CLI: a small streaming JSON writer with safe string escaping. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "cli/out.h"
#include "lib/json_esc.h"

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
}

void cli_json_init_compact(struct cli_json *j, FILE *f)
{
	cli_json_init(j, f);
	j->compact = true;
}

static void indent(struct cli_json *j)
{
	int i;

	if (j->compact)
		return;
	fputc('\n', j->f);
	for (i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

/* Before any value: a comma and a new line unless it follows a key. */
static void before_value(struct cli_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth == 0)
		return;
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	indent(j);
}

static void open(struct cli_json *j, char c)
{
	before_value(j);
	fputc(c, j->f);
	if (j->depth + 1 >= CLI_JSON_DEPTH_MAX) {
		j->broken = true;
		return;
	}
	j->depth++;
	j->first[j->depth] = true;
}

static void close_(struct cli_json *j, char c)
{
	bool empty;

	if (j->depth == 0) {
		j->broken = true;
		return;
	}
	empty = j->first[j->depth];
	j->depth--;
	if (!empty)
		indent(j);
	fputc(c, j->f);
}

void cli_json_begin_object(struct cli_json *j)
{
	open(j, '{');
}

void cli_json_end_object(struct cli_json *j)
{
	close_(j, '}');
}

void cli_json_begin_array(struct cli_json *j)
{
	open(j, '[');
}

void cli_json_end_array(struct cli_json *j)
{
	close_(j, ']');
}

void cli_json_key(struct cli_json *j, const char *key)
{
	before_value(j);
	cn_json_escape(j->f, key, strlen(key));
	fputs(j->compact ? ":" : ": ", j->f);
	j->after_key = true;
}

void cli_json_string_len(struct cli_json *j, const char *s, size_t len)
{
	before_value(j);
	cn_json_escape(j->f, s ? s : "", s ? len : 0);
}

void cli_json_string(struct cli_json *j, const char *s)
{
	cli_json_string_len(j, s, s ? strlen(s) : 0);
}

void cli_json_uint(struct cli_json *j, uint64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRIu64, v);
}

void cli_json_int(struct cli_json *j, int64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRId64, v);
}

void cli_json_double(struct cli_json *j, double v)
{
	before_value(j);
	/* JSON has no NaN or infinity. */
	if (isfinite(v))
		fprintf(j->f, "%.17g", v);
	else
		fputs("null", j->f);
}

void cli_json_bool(struct cli_json *j, bool v)
{
	before_value(j);
	fputs(v ? "true" : "false", j->f);
}

void cli_json_null(struct cli_json *j)
{
	before_value(j);
	fputs("null", j->f);
}

void cli_json_finish(struct cli_json *j)
{
	fputc('\n', j->f);
	fflush(j->f);
}
