/* canopy CLI: `vm console`: the output side, and which mode to run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_vm.h"
#include "cli/console.h"

#define M_READ_CONSOLE "/canopy.v1.VmService/ReadConsole"
#define M_GET_VM "/canopy.v1.VmService/GetVm"

/* One ReadConsole at st->offset. 0 with *out, or -errno (recorded). */
static int read_once(struct cli_console *st, uint32_t max,
		     Canopy__V1__ReadConsoleResponse **out)
{
	Canopy__V1__ReadConsoleRequest req =
		CANOPY__V1__READ_CONSOLE_REQUEST__INIT;

	req.name = (char *)st->name;
	req.offset = st->offset;
	req.max_bytes = max;
	return cli_call(st->c, M_READ_CONSOLE, &req.base,
			&canopy__v1__read_console_response__descriptor,
			(ProtobufCMessage **)out);
}

/* Print (or keep, for JSON) one slice of console bytes. */
static int emit(struct cli_console *st,
		const Canopy__V1__ReadConsoleResponse *r)
{
	struct cli_json j;
	size_t cap = 4 * r->data.len + 1, n;
	char *buf = malloc(cap), *p;

	if (!buf)
		return cli_fail(st->c, CLI_EXIT_FAIL, "out of memory");
	n = cli_console_escape(buf, cap, r->data.data, r->data.len);
	if (st->raw) {
		fwrite(r->data.data, 1, r->data.len, st->c->out);
	} else if (!st->c->json) {
		fwrite(buf, 1, n, st->c->out);
	} else if (st->follow) { /* one compact object per slice */
		cli_json_init_compact(&j, st->c->out);
		cli_json_begin_object(&j);
		cli_json_key(&j, "data");
		cli_json_string_len(&j, buf, n);
		cli_json_key(&j, "next_offset");
		cli_json_uint(&j, r->next_offset);
		cli_json_end_object(&j);
		cli_json_finish(&j);
	} else {
		p = realloc(st->json_text, st->json_len + n + 1);
		if (!p) {
			free(buf);
			return cli_fail(st->c, CLI_EXIT_FAIL, "out of memory");
		}
		memcpy(p + st->json_len, buf, n);
		st->json_len += n;
		st->json_text = p;
	}
	fflush(st->c->out);
	free(buf);
	return 0;
}

int cli_console_drain(struct cli_console *st, bool *got)
{
	Canopy__V1__ReadConsoleResponse *r;
	bool more = true;
	int rc = 0;

	*got = false;
	while (!rc && more) {
		rc = read_once(st, 0, &r);
		if (rc)
			break;
		if (r->data.len)
			rc = emit(st, r);
		/* A log that restarted (shorter than our offset) goes on from
		 * its end; a server that does not advance stops the loop. */
		more = r->data.len && r->next_offset > st->offset;
		*got = *got || more;
		more = more && r->next_offset < r->size;
		st->offset = r->next_offset;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	return rc;
}

int cli_console_start(struct cli_console *st, bool tail)
{
	Canopy__V1__ReadConsoleResponse *r;
	int rc;

	st->offset = UINT64_MAX; /* past the end: the size, no data */
	rc = read_once(st, 1, &r);
	if (rc)
		return rc;
	st->offset = !tail			? r->size :
		     r->size > CLI_CONSOLE_TAIL ? r->size - CLI_CONSOLE_TAIL :
						  0;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

int cli_console_vm_up(struct cli_console *st)
{
	Canopy__V1__GetVmRequest req = CANOPY__V1__GET_VM_REQUEST__INIT;
	Canopy__V1__Vm *vm;
	int rc, up;

	req.name = (char *)st->name;
	rc = cli_call(st->c, M_GET_VM, &req.base, &canopy__v1__vm__descriptor,
		      (ProtobufCMessage **)&vm);
	if (rc)
		return rc;
	up = vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_CREATED ||
	     vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING ||
	     vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED ||
	     vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
	protobuf_c_message_free_unpacked(&vm->base, NULL);
	return up;
}

/* --follow: poll until the VM stops (then print what is left). */
static int follow(struct cli_console *st)
{
	struct timespec ts = { 0, CLI_CONSOLE_POLL_MS * 1000000L };
	bool got;
	int rc;

	for (;;) {
		rc = cli_console_drain(st, &got);
		if (rc)
			return rc;
		if (got)
			continue;
		rc = cli_console_vm_up(st);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return cli_console_drain(st, &got);
		nanosleep(&ts, NULL);
	}
}

static void print_json(struct cli_console *st)
{
	struct cli_json j;

	cli_json_init(&j, st->c->out);
	cli_json_begin_object(&j);
	cli_json_key(&j, "data");
	cli_json_string_len(&j, st->json_text ? st->json_text : "",
			    st->json_len);
	cli_json_key(&j, "next_offset");
	cli_json_uint(&j, st->offset);
	cli_json_end_object(&j);
	cli_json_finish(&j);
}

/* Where input comes from: -1 none (read-only), else an fd (*own: ours to
 * close); *tty for the interactive terminal. 0 or -errno (recorded). */
static int input_fd(struct cli *c, const struct cli_args *a, int *fd, bool *own,
		    bool *tty)
{
	const char *in = cli_args_get(a, "input");
	struct stat sb;

	*fd = -1;
	*own = *tty = false;
	if (in && strcmp(in, "-") != 0) {
		*fd = open(in, O_RDONLY | O_CLOEXEC);
		if (*fd < 0)
			return cli_fail(c, CLI_EXIT_USAGE, "--input %s: %s", in,
					strerror(errno));
		*own = true;
	} else if (in) {
		*fd = STDIN_FILENO;
	} else if (isatty(STDIN_FILENO) && c->tty && !c->json) {
		*fd = STDIN_FILENO;
		*tty = true;
	} else if (!cli_args_has(a, "follow") &&
		   fstat(STDIN_FILENO, &sb) == 0 && S_ISFIFO(sb.st_mode)) {
		*fd = STDIN_FILENO; /* piped: `echo ls | canopy vm console` */
	}
	return 0;
}

int cli_vm_console(struct cli *c, const struct cli_args *a)
{
	struct cli_console st = { .c = c, .name = a->pos[0] };
	bool got, own, tty, all = cli_args_has(a, "from-start");
	int rc, fd;

	st.follow = cli_args_has(a, "follow");
	rc = input_fd(c, a, &fd, &own, &tty);
	if (rc)
		return rc;
	if (fd >= 0) {
		/* Piped input shows what comes from now on; a terminal the
		 * tail first, as the default view. The read also picks the
		 * server WriteConsole then goes to. */
		st.follow = true;
		rc = cli_console_start(&st, tty);
		if (all)
			st.offset = 0;
		if (!rc)
			rc = tty ? cli_console_interactive(&st) :
				   cli_console_input(&st, fd);
		if (own)
			close(fd);
		return rc;
	}
	if (!all)
		rc = cli_console_start(&st, true);
	if (!rc)
		rc = st.follow ? follow(&st) : cli_console_drain(&st, &got);
	if (!rc && c->json && !st.follow)
		print_json(&st);
	free(st.json_text);
	return rc;
}

const struct cli_optdef cli_vm_console_opts[] = {
	{ .name = "follow" },
	{ .name = "from-start" },
	{ .name = "input", .has_arg = true },
	{ 0 },
};
