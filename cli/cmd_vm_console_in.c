/* canopy CLI: `vm console` input: piped bytes or an interactive terminal. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/console.h"
#include "lib/err.h"

#define M_WRITE_CONSOLE "/canopy.v1.VmService/WriteConsole"

/* One input side of a console. */
struct con_in {
	struct cli_console *st;
	int fd;
	bool tty; /* interactive: Ctrl-] quits, the VM's end too */
	bool eof; /* no more input (the end of fd, or Ctrl-]) */
	bool quit; /* Ctrl-] typed */
	uint8_t buf[CLI_CONSOLE_WRITE_MAX]; /* read, not yet accepted */
	size_t len;
	unsigned interval_ms; /* output poll, adaptive */
	uint64_t active_ms; /* last input or output */
};

/* The signal that asks an interactive console to end, 0 for none. A
 * signal handler can only reach a global. */
static volatile sig_atomic_t con_signal;

static void on_signal(int sig)
{
	con_signal = sig;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One WriteConsole of io's pending bytes; *full when the VMM's queue had
 * no room (try again later). 0 or -errno (recorded). */
static int write_once(struct con_in *io, bool *full)
{
	Canopy__V1__WriteConsoleRequest req =
		CANOPY__V1__WRITE_CONSOLE_REQUEST__INIT;
	const ProtobufCMessageDescriptor *d =
		&canopy__v1__write_console_response__descriptor;
	struct cli *c = io->st->c;
	struct cli_status st = { 0 };
	ProtobufCMessage *resp = NULL;
	int rc;

	*full = false;
	req.name = (char *)io->st->name;
	req.data.data = io->buf;
	req.data.len = io->len;
	if (!c->picked || !c->rpcs[c->cur]) /* no server chosen yet */
		rc = cli_call(c, M_WRITE_CONSOLE, &req.base, d, &resp);
	else
		rc = cli_rpc_unary(c->rpcs[c->cur], M_WRITE_CONSOLE, &req.base,
				   d, c->timeout_ms, &resp, &st);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (rc == 0 || !c->picked || !c->rpcs[c->cur])
		return rc;
	if (st.code == CN_RESOURCE_EXHAUSTED) {
		*full = true;
		return 0;
	}
	if (st.code == CN_UNAVAILABLE) /* maybe a failover: every server */
		return cli_call(c, M_WRITE_CONSOLE, &req.base, d, &resp) ?: 0;
	return cli_fail_status(c, &st);
}

/* Wait up to the poll interval for input; read what there is. 0 or
 * -errno (recorded). */
static int read_input(struct con_in *io)
{
	struct pollfd p = { .fd = io->fd, .events = POLLIN };
	struct timespec ts = { 0, (long)io->interval_ms * 1000000L };
	uint8_t *esc;
	ssize_t n;

	if (io->eof || io->len == sizeof(io->buf)) {
		nanosleep(&ts, NULL);
		return 0;
	}
	if (poll(&p, 1, (int)io->interval_ms) <= 0)
		return 0; /* timeout, or a signal: the loop looks */
	n = read(io->fd, io->buf + io->len, sizeof(io->buf) - io->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0)
		return cli_fail(io->st->c, CLI_EXIT_FAIL,
				"cannot read the console input: %s",
				strerror(errno));
	esc = io->tty ?
		      memchr(io->buf + io->len, CLI_CONSOLE_ESCAPE, (size_t)n) :
		      NULL;
	if (esc) {
		n = esc - (io->buf + io->len);
		io->quit = true;
	}
	io->eof = io->eof || n == 0 || esc;
	io->len += (size_t)n;
	return 0;
}

/* Whether the loop is over: 1 yes, 0 no, or -errno (recorded). */
static int done(struct con_in *io, bool active)
{
	uint64_t now = mono_ms();
	int up;

	if (active) {
		io->active_ms = now;
		io->interval_ms = CLI_CONSOLE_POLL_FAST_MS;
		return 0;
	}
	if (io->interval_ms < CLI_CONSOLE_POLL_SLOW_MS)
		io->interval_ms = io->interval_ms * 2 <
						  CLI_CONSOLE_POLL_SLOW_MS ?
					  io->interval_ms * 2 :
					  CLI_CONSOLE_POLL_SLOW_MS;
	if (io->eof && !io->len &&
	    (io->quit || io->tty ||
	     now - io->active_ms >= CLI_CONSOLE_LINGER_MS))
		return 1;
	if (!io->tty || io->interval_ms < CLI_CONSOLE_POLL_SLOW_MS)
		return 0;
	up = cli_console_vm_up(io->st); /* idle at the slow pace */
	if (up == 0)
		fprintf(stderr, "\r\n[vm %s stopped]\r\n", io->st->name);
	return up < 0 ? up : !up;
}

/* Send input and print output until done. 0 or -errno (recorded). */
static int pump(struct con_in *io)
{
	bool got, full, sent;
	int rc;

	io->interval_ms = CLI_CONSOLE_POLL_FAST_MS;
	io->active_ms = mono_ms();
	for (;;) {
		if (con_signal)
			return cli_fail(io->st->c, 128 + con_signal,
					"console closed by signal %d",
					(int)con_signal);
		sent = false;
		rc = read_input(io);
		if (!rc && io->len) {
			rc = write_once(io, &full);
			sent = !rc && !full;
			if (sent)
				io->len = 0;
		}
		if (!rc)
			rc = cli_console_drain(io->st, &got);
		if (!rc)
			rc = done(io, sent || got);
		if (rc)
			return rc < 0 ? rc : 0;
	}
}

int cli_console_input(struct cli_console *st, int fd)
{
	struct con_in io = { .st = st, .fd = fd };

	return pump(&io);
}

/* SIGINT, SIGTERM and SIGHUP end the console (the terminal restored);
 * old gets the previous actions. */
static const int con_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define CON_NSIG (sizeof(con_signals) / sizeof(con_signals[0]))

static void signals_set(struct sigaction *old)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll returns */
	sigemptyset(&sa.sa_mask);
	con_signal = 0;
	for (size_t i = 0; i < CON_NSIG; i++)
		sigaction(con_signals[i], &sa, &old[i]);
}

static void signals_restore(const struct sigaction *old)
{
	for (size_t i = 0; i < CON_NSIG; i++)
		sigaction(con_signals[i], &old[i], NULL);
}

int cli_console_interactive(struct cli_console *st)
{
	struct con_in io = { .st = st, .fd = STDIN_FILENO, .tty = true };
	struct sigaction old[CON_NSIG];
	struct termios saved, raw;
	int rc;

	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return cli_fail(st->c, CLI_EXIT_FAIL,
				"cannot read the terminal's settings: %s",
				strerror(errno));
	fprintf(stderr,
		"Connected to the console of vm %s. Escape character is ^] "
		"(Ctrl-]): type it to quit.\n",
		st->name);
	raw = saved;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST; /* keep LF -> CR LF for the guest's lines */
	signals_set(old);
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0) {
		rc = cli_fail(st->c, CLI_EXIT_FAIL,
			      "cannot put the terminal in raw mode: %s",
			      strerror(errno));
		goto out_signals;
	}
	st->raw = true;
	rc = cli_console_drain(st, &(bool){ false });
	if (!rc)
		rc = pump(&io);
	fflush(st->c->out);
	(void)tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	fputs("\n", stderr);
out_signals:
	signals_restore(old);
	return rc;
}
