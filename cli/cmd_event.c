/* canopy CLI: `event list [--limit N] [--follow]`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/pbjson.h"
#include "lib/err.h"

#define M_LIST_EVENTS "/canopy.v1.EventService/ListEvents"
#define M_WATCH_EVENTS "/canopy.v1.EventService/WatchEvents"
/* Most events one list asks for. */
#define EVENT_LIMIT_MAX 10000

static void sev_text(char *buf, size_t size, const Canopy__V1__Event *e)
{
	cli_enum_text(buf, size, &canopy__v1__event_severity__descriptor,
		      e->severity, "EVENT_SEVERITY_");
}

static int event_row(struct cli_table *t, const ProtobufCMessage *m,
		     uint64_t now)
{
	const Canopy__V1__Event *e = (const Canopy__V1__Event *)m;
	char seq[24], age[32], sev[16];
	const char *row[] = { seq, age, sev, e->kind, e->object, e->message };

	snprintf(seq, sizeof(seq), "%" PRIu64, e->seq);
	cli_fmt_age(age, sizeof(age), e->unix_ms, now);
	sev_text(sev, sizeof(sev), e);
	return cli_table_add(t, row);
}

/* Events arrive newest first: print them oldest first. */
static int print_list(struct cli *c, Canopy__V1__ListEventsResponse *r)
{
	static const char *const hdr[] = { "SEQ",  "AGE",    "SEVERITY",
					   "KIND", "OBJECT", "MESSAGE" };
	static const struct cli_list l = {
		.field = "events",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = event_row,
		.reverse = true,
	};
	ProtobufCMessage *page = &r->base;

	return cli_list_print(c, &l, &page, 1);
}

/* One followed event: a JSON object per line, or a plain line. */
static void print_followed(struct cli *c, const Canopy__V1__Event *e)
{
	char when[32], sev[16], kind[CLI_CELL_MAX * 4], obj[CLI_CELL_MAX * 4];
	char msg[CLI_CELL_MAX * 16];
	struct cli_json j;
	time_t secs = (time_t)(e->unix_ms / 1000);
	struct tm tm;

	if (c->json) {
		/* One object per line (JSON Lines): a stream has no end. */
		cli_json_init_compact(&j, c->out);
		cli_pb_json(&j, &e->base);
		cli_json_finish(&j);
		return;
	}
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	sev_text(sev, sizeof(sev), e);
	cli_text_clean(kind, sizeof(kind), e->kind, CLI_CELL_MAX);
	cli_text_clean(obj, sizeof(obj), e->object, CLI_CELL_MAX);
	cli_text_clean(msg, sizeof(msg), e->message, CLI_CELL_MAX * 4);
	fprintf(c->out, "%" PRIu64 "  %s  %-7s  %s  %s  %s\n", e->seq, when,
		sev, kind, obj[0] ? obj : "-", msg);
	fflush(c->out);
}

static int follow(struct cli *c, uint64_t after)
{
	Canopy__V1__WatchEventsRequest req =
		CANOPY__V1__WATCH_EVENTS_REQUEST__INIT;
	Canopy__V1__Event *e;
	struct cli_stream *s;
	struct cli_status st;
	int rc;

	req.after_seq = after;
	rc = cli_stream(c, M_WATCH_EVENTS, &req.base, &s);
	if (rc)
		return rc;
	while ((rc = cli_stream_next(s, &canopy__v1__event__descriptor,
				     (ProtobufCMessage **)&e, &st)) == 1) {
		print_followed(c, e);
		protobuf_c_message_free_unpacked(&e->base, NULL);
	}
	/* --timeout bounds a follow: reaching it is the normal end. */
	if (rc < 0 && st.code == CN_DEADLINE_EXCEEDED && c->timeout_given)
		rc = 0;
	else if (rc < 0)
		rc = cli_fail_status(c, &st);
	cli_stream_close(s);
	return rc;
}

static int event_list(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__ListEventsRequest req =
		CANOPY__V1__LIST_EVENTS_REQUEST__INIT;
	Canopy__V1__ListEventsResponse *r;
	const char *lim = cli_args_get(a, "limit");
	char err[CLI_ERR_MAX];
	uint64_t limit = 0, after = 0;
	size_t i;
	int rc;

	if (lim && cli_parse_uint("--limit", lim, 1, EVENT_LIMIT_MAX, &limit,
				  err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	req.limit = (uint32_t)limit;
	rc = cli_call(c, M_LIST_EVENTS, &req.base,
		      &canopy__v1__list_events_response__descriptor,
		      (ProtobufCMessage **)&r);
	if (rc)
		return rc;
	for (i = 0; i < r->n_events; i++)
		after = CN_MAX(after, r->events[i]->seq);
	/* A followed list prints history and new events in one line format. */
	if (!cli_args_has(a, "follow"))
		rc = print_list(c, r);
	else
		for (i = r->n_events; i-- > 0;)
			print_followed(c, r->events[i]);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	if (!rc && cli_args_has(a, "follow"))
		rc = follow(c, after);
	return rc;
}

static const struct cli_optdef event_opts[] = {
	{ .name = "limit", .has_arg = true },
	{ .name = "follow", .shortc = 'f' },
	{ 0 },
};

const struct cli_cmd cli_event_cmds[] = {
	{ .object = "event",
	  .verb = "list",
	  .args = "[--limit N] [--follow]",
	  .summary = "Show recent events, oldest first; --follow keeps "
		     "printing new ones.",
	  .help = "  --limit N           at most N events (default: the "
		  "server's, 100)\n"
		  "  -f, --follow        then wait for new events until Ctrl-C "
		  "or --timeout;\n"
		  "                      events print one per line (with -o "
		  "json, one JSON\n"
		  "                      object per line)\n",
	  .opts = event_opts,
	  .min_pos = 0,
	  .max_pos = 0,
	  .run = event_list },
	{ 0 },
};
