/* canopy CLI: `task list|show|wait|cancel` and following a task to its end. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/err.h"

#define M_LIST_TASKS "/canopy.v1.TaskService/ListTasks"
#define M_GET_TASK "/canopy.v1.TaskService/GetTask"
#define M_WAIT_TASK "/canopy.v1.TaskService/WaitTask"
#define M_CANCEL_TASK "/canopy.v1.TaskService/CancelTask"
/* Cells of the progress bar on a terminal. */
#define BAR_WIDTH 30

static bool task_final(const Canopy__V1__Task *t)
{
	return t->state == CANOPY__V1__TASK_STATE__TASK_STATE_SUCCEEDED ||
	       t->state == CANOPY__V1__TASK_STATE__TASK_STATE_FAILED ||
	       t->state == CANOPY__V1__TASK_STATE__TASK_STATE_CANCELLED;
}

static void task_state(char *buf, size_t size, const Canopy__V1__Task *t)
{
	cli_enum_text(buf, size, &canopy__v1__task_state__descriptor, t->state,
		      "TASK_STATE_");
}

/* How long the task ran (or has been running). */
static void task_took(char *buf, size_t size, const Canopy__V1__Task *t,
		      uint64_t now)
{
	uint64_t end = t->end_unix_ms ? t->end_unix_ms : now;

	if (!t->start_unix_ms || end < t->start_unix_ms)
		snprintf(buf, size, "-");
	else
		cli_fmt_duration(buf, size, end - t->start_unix_ms);
}

static int task_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__Task *k = (const Canopy__V1__Task *)m;
	char state[32], pct[8], start[32], took[32];
	const char *row[] = { k->id, k->kind,  k->object, state,
			      pct,   k->phase, start,	  took };

	task_state(state, sizeof(state), k);
	snprintf(pct, sizeof(pct), "%u%%", k->progress);
	cli_fmt_age(start, sizeof(start), k->start_unix_ms, now);
	task_took(took, sizeof(took), k, now);
	return cli_table_add(t, row);
}

static int task_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "ID",      "KIND",	  "OBJECT",
					   "STATE",   "PROGRESS", "PHASE",
					   "STARTED", "DURATION" };
	static const struct cli_list l = {
		.method = M_LIST_TASKS,
		.resp_desc = &canopy__v1__list_tasks_response__descriptor,
		.field = "tasks",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = task_row,
	};
	Canopy__V1__ListTasksRequest req = CANOPY__V1__LIST_TASKS_REQUEST__INIT;

	req.active_only = cli_args_has(a, "active");
	return cli_list_run(c, &l, &req.base);
}

static void task_print(struct cli *c, const ProtobufCMessage *m)
{
	const Canopy__V1__Task *t = (const Canopy__V1__Task *)m;
	char state[32], pct[8], start[32], took[32], err[CLI_RPC_MSG_MAX + 64];
	const char *keys[] = { "ID",	   "Kind",    "Object",	 "State",
			       "Progress", "Phase",   "Started", "Duration",
			       "User",	   "Manager", "Result",	 "Error" };
	const char *vals[] = { t->id,
			       t->kind,
			       t->object,
			       state,
			       pct,
			       t->phase[0] ? t->phase : "-",
			       start,
			       took,
			       t->user[0] ? t->user : "-",
			       t->manager[0] ? t->manager : "-",
			       t->result[0] ? t->result : "-",
			       err };
	uint64_t now = cli_now_ms();

	task_state(state, sizeof(state), t);
	snprintf(pct, sizeof(pct), "%u%%", t->progress);
	cli_fmt_age(start, sizeof(start), t->start_unix_ms, now);
	task_took(took, sizeof(took), t, now);
	if (t->error && t->error->code)
		snprintf(err, sizeof(err), "%s (%s)", t->error->message,
			 cn_code_name((enum cn_code)t->error->code));
	else
		snprintf(err, sizeof(err), "-");
	cli_kv_print(c->out, CN_ARRAY_SIZE(keys), keys, vals);
}

/* Call a TaskService method taking an id and returning a Task. */
static int task_get(struct cli *c, const char *method, const char *id,
		    Canopy__V1__Task **out)
{
	Canopy__V1__GetTaskRequest req = CANOPY__V1__GET_TASK_REQUEST__INIT;

	/* GetTask, CancelTask and WaitTask requests are all { string id }. */
	req.id = (char *)id;
	return cli_call(c, method, &req.base, &canopy__v1__task__descriptor,
			(ProtobufCMessage **)out);
}

static int task_show(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__GetTaskRequest req = CANOPY__V1__GET_TASK_REQUEST__INIT;

	req.id = (char *)a->pos[0];
	return cli_show_run(c, M_GET_TASK, &req.base,
			    &canopy__v1__task__descriptor, task_print);
}

static int task_cancel(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__Task *t;
	char state[32], id[CLI_CELL_MAX * 4];
	int rc = task_get(c, M_CANCEL_TASK, a->pos[0], &t);

	if (rc)
		return rc;
	if (c->json) {
		cli_print_json(c, &t->base);
	} else {
		task_state(state, sizeof(state), t);
		cli_text_clean(id, sizeof(id), t->id, CLI_CELL_MAX);
		fprintf(c->out, "task %s: %s\n", id, state);
	}
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

static int task_wait_cmd(struct cli *c, const struct cli_args *a)
{
	return cli_task_wait(c, a->pos[0]);
}

/* One progress report: a redrawn bar on a terminal, a line otherwise. */
static void progress(struct cli *c, const Canopy__V1__Task *t)
{
	char phase[CLI_CELL_MAX * 4], id[CLI_CELL_MAX * 4], bar[BAR_WIDTH + 16];

	cli_text_clean(phase, sizeof(phase), t->phase[0] ? t->phase : "-",
		       CLI_CELL_MAX);
	cli_text_clean(id, sizeof(id), t->id, CLI_CELL_MAX);
	if (c->tty) {
		cli_fmt_bar(bar, sizeof(bar), t->progress, BAR_WIDTH);
		fprintf(c->out, "\r\033[K%s %s", bar, phase);
	} else {
		fprintf(c->out, "task %s: %s %u%%\n", id, phase, t->progress);
	}
	fflush(c->out);
}

/* The outcome of a task that reached a final state. */
static int task_outcome(struct cli *c, const Canopy__V1__Task *t)
{
	char took[32], id[CLI_CELL_MAX * 4], obj[CLI_CELL_MAX * 4];
	char kind[CLI_CELL_MAX * 4];

	if (c->json)
		cli_print_json(c, &t->base);
	cli_text_clean(id, sizeof(id), t->id, CLI_CELL_MAX);
	cli_text_clean(obj, sizeof(obj), t->object, CLI_CELL_MAX);
	cli_text_clean(kind, sizeof(kind), t->kind, CLI_CELL_MAX);
	if (t->state == CANOPY__V1__TASK_STATE__TASK_STATE_SUCCEEDED) {
		task_took(took, sizeof(took), t, cli_now_ms());
		if (!c->json)
			fprintf(c->out, "task %s: %s %s: succeeded in %s\n", id,
				kind, obj, took);
		return 0;
	}
	return cli_fail(c, CLI_EXIT_FAIL, "task %s (%s %s) %s: %s", id, kind,
			obj,
			t->state == CANOPY__V1__TASK_STATE__TASK_STATE_FAILED ?
				"failed" :
				"was cancelled",
			t->error && t->error->message[0] ? t->error->message :
							   "no reason given");
}

int cli_task_wait(struct cli *c, const char *id)
{
	Canopy__V1__WaitTaskRequest req = CANOPY__V1__WAIT_TASK_REQUEST__INIT;
	Canopy__V1__Task *t, *last = NULL;
	struct cli_stream *s;
	struct cli_status st;
	char idc[CLI_CELL_MAX * 4];
	int rc;

	cli_text_clean(idc, sizeof(idc), id, CLI_CELL_MAX);
	req.id = (char *)id;
	rc = cli_stream(c, M_WAIT_TASK, &req.base, &s);
	if (rc)
		return rc;
	while ((rc = cli_stream_next(s, &canopy__v1__task__descriptor,
				     (ProtobufCMessage **)&t, &st)) == 1) {
		bool moved = !last || last->progress != t->progress ||
			     strcmp(last->phase, t->phase) ||
			     last->state != t->state;

		if (moved && !c->json && !task_final(t))
			progress(c, t);
		if (last)
			protobuf_c_message_free_unpacked(&last->base, NULL);
		last = t;
		if (task_final(t))
			break;
	}
	if (c->tty && !c->json && last)
		fputc('\n', c->out);
	if (rc < 0 && st.code == CN_DEADLINE_EXCEEDED && c->timeout_given)
		rc = cli_fail(
			c, cn_code_exit(CN_DEADLINE_EXCEEDED),
			"task %s did not finish within %.1f s (--timeout); "
			"it goes on: 'canopy task wait %s' follows it again",
			idc, c->timeout_ms / 1000.0, idc);
	else if (rc < 0)
		rc = cli_fail_status(c, &st);
	else if (!last || !task_final(last))
		rc = cli_fail(c, CLI_EXIT_FAIL,
			      "the server ended the wait before task %s "
			      "finished; run 'canopy task wait %s' again",
			      idc, idc);
	else
		rc = task_outcome(c, last);
	if (last)
		protobuf_c_message_free_unpacked(&last->base, NULL);
	cli_stream_close(s);
	return rc;
}

int cli_task_after(struct cli *c, const Canopy__V1__Task *t, bool no_wait)
{
	char id[CLI_CELL_MAX * 4];

	if (!no_wait && !task_final(t))
		return cli_task_wait(c, t->id);
	if (!no_wait)
		return task_outcome(c, t);
	if (c->json) {
		cli_print_json(c, &t->base);
	} else {
		cli_text_clean(id, sizeof(id), t->id, CLI_CELL_MAX);
		fprintf(c->out, "%s\n", id);
	}
	return 0;
}

static const struct cli_optdef list_opts[] = {
	{ .name = "active" },
	{ 0 },
};

const struct cli_cmd cli_task_cmds[] = {
	{ .object = "task",
	  .verb = "list",
	  .args = "[--active]",
	  .summary = "List tasks, newest first.",
	  .help = "  --active            only queued and running tasks\n",
	  .opts = list_opts,
	  .run = task_list },
	CLI_CMD_1("task", "show", "ID",
		  "Show one task: state, progress, result or error.",
		  task_show),
	CLI_CMD_1("task", "wait", "ID",
		  "Follow a task to its end; exit 1 if it fails.",
		  task_wait_cmd),
	CLI_CMD_1("task", "cancel", "ID", "Ask the server to cancel a task.",
		  task_cancel),
	{ 0 },
};
