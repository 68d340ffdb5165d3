/* Test guest: the `echo` workload: COM1 input lines printed back. */
#include "guest/user.h"

#define ECHO_LINE_MAX 200 /* longer lines are echoed in pieces */
#define ECHO_READ_MAX 64 /* bytes asked for per read system call */
#define ECHO_IDLE_US 500 /* wait between reads that found nothing */

/* Print the line held so far (even empty) and start a new one. */
static void put_line(const char *line, size_t *len, uint64_t *lines)
{
	user_printf("echo: %.*s\n", (int)*len, line);
	*len = 0;
	++*lines;
}

/* Wait about ECHO_IDLE_US (the TSC rate known) or a few pause loops. */
static void idle(const struct user_ctx *u)
{
	uint64_t end;

	if (!u->tsc_khz) {
		for (unsigned i = 0; i < 4096; i++)
			user_relax();
		return;
	}
	end = guest_rdtsc() + u->tsc_khz * ECHO_IDLE_US / 1000;
	while (guest_rdtsc() < end)
		user_relax();
}

/*
 * `echo[,limit=K]`: "echo: ready", then every line read from COM1 (ended
 * by LF or CR; a CR LF pair is one end) printed back as "echo: LINE";
 * lines over ECHO_LINE_MAX bytes come back in pieces. Exits after K lines.
 */
int work_echo(struct user_ctx *u)
{
	static const char *const keys[] = { "limit", NULL };
	char line[ECHO_LINE_MAX], in[ECHO_READ_MAX];
	uint64_t limit, lines = 0;
	size_t len = 0;
	char prev = 0;

	if (user_args_check(u, keys, 0) || user_arg_u64(u, "limit", 0, &limit))
		return GUEST_EXIT_USAGE;
	user_printf("echo: ready\n");
	for (;;) {
		size_t n = user_read(in, sizeof(in));

		if (!n)
			idle(u);
		for (size_t i = 0; i < n; i++) {
			char ch = in[i];

			if (ch == '\n' && prev == '\r') {
				prev = ch;
				continue;
			}
			prev = ch;
			if (ch == '\n' || ch == '\r')
				put_line(line, &len, &lines);
			else if (len == sizeof(line))
				put_line(line, &len, &lines);
			if (ch != '\n' && ch != '\r')
				line[len++] = ch;
			if (limit && lines >= limit)
				return GUEST_EXIT_OK;
		}
	}
}
