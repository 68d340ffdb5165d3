/* Test helper: a fake canopy-agent on lib/bus for the manager's tests.
 *
 *   mgr_fake_agent --manager tcp://HOST:PORT --host-id ID
 *                  [--memory-mib N] [--cpus N] [--heartbeat-ms N]
 *                  [--datastore NAME] [--pki-dir DIR [--join TOKEN]]
 *                  [--cpu-features V,V,...]   (registered as given, any count)
 *
 * Registers on connection (again after each reconnection), heartbeats,
 * and answers each VmCommand as its mode says. Lines on stdout:
 *   ready | registered CODE | command ACTION VM | connected | disconnected
 * Lines on stdin change it:
 *   mode ok | mode error MESSAGE | mode silent   (how commands are answered)
 *   stats USED_MIB                               (send HostStats)
 *   report VM STATE RSS                          (send a VmStateReport)
 *   quit
 * To stop its heartbeats a test sends SIGSTOP, to resume SIGCONT.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bus.h"
#include "lib/bus_enrol.h"
#include "lib/bus_keys.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

enum mode { MODE_OK, MODE_ERROR, MODE_SILENT };

struct fake {
	struct loop *l;
	struct bus_client *bus;
	const char *host_id;
	uint32_t cpus;
	uint64_t memory_mib;
	char *datastore;
	uint32_t cpu_features[16];
	size_t n_cpu_features;
	enum mode mode;
	char err_msg[256];
	char line[512];
	size_t line_len;
};

static void out(const char *fmt, ...) CN_PRINTF(1, 2);
static void out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void on_registered(void *arg, int status,
			  const Canopy__V1__Envelope *reply)
{
	int code = -1;

	if (status == 0 &&
	    reply->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    reply->result->status)
		code = reply->result->status->code;
	else if (status == 0)
		code = 0;
	out("registered %d", status ? status : code);
}

static void send_register(struct fake *f)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentRegister reg = CANOPY__V1__AGENT_REGISTER__INIT;

	reg.hostname = (char *)f->host_id;
	reg.cpus = f->cpus;
	reg.memory_mib = f->memory_mib;
	reg.version = (char *)"fake-1";
	reg.address = (char *)"127.0.0.1";
	if (f->datastore) {
		reg.n_datastores = 1;
		reg.datastores = &f->datastore;
	}
	reg.cpu_features = f->cpu_features;
	reg.n_cpu_features = f->n_cpu_features;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	if (bus_client_request(f->bus, &env, 2000, on_registered, f, NULL))
		out("register-failed");
}

static void on_connected(void *arg)
{
	out("connected");
	send_register(arg);
}

static void on_disconnected(void *arg)
{
	out("disconnected");
}

static void on_message(void *arg, const Canopy__V1__Envelope *env)
{
	struct fake *f = arg;
	Canopy__V1__Envelope rep = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	const Canopy__V1__VmCommand *cmd;

	if (env->body_case != CANOPY__V1__ENVELOPE__BODY_VM_COMMAND)
		return;
	cmd = env->vm_command;
	out("command %s %s",
	    protobuf_c_enum_descriptor_get_value(
		    &canopy__v1__vm_action__descriptor, cmd->action) ?
		    protobuf_c_enum_descriptor_get_value(
			    &canopy__v1__vm_action__descriptor, cmd->action)
			    ->name :
		    "?",
	    cmd->vm_id);
	if (f->mode == MODE_SILENT)
		return;
	if (f->mode == MODE_ERROR) {
		st.code = 9; /* FAILED_PRECONDITION */
		st.message = f->err_msg;
	}
	res.status = &st;
	rep.body_case = CANOPY__V1__ENVELOPE__BODY_RESULT;
	rep.result = &res;
	if (bus_client_reply(f->bus, env, &rep))
		out("reply-failed");
}

static void send_stats(struct fake *f, unsigned long long used)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__HostStats hs = CANOPY__V1__HOST_STATS__INIT;

	hs.memory_used_mib = used;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_HOST_STATS;
	env.host_stats = &hs;
	out(bus_client_send(f->bus, &env) ? "send-failed" : "sent");
}

static void send_report(struct fake *f, char *vm, int state,
			unsigned long long rss)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__VmStateReport r = CANOPY__V1__VM_STATE_REPORT__INIT;

	r.vm_id = vm;
	r.state = state;
	r.rss_bytes = rss;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_VM_STATE;
	env.vm_state = &r;
	out(bus_client_send(f->bus, &env) ? "send-failed" : "sent");
}

static void command(struct fake *f, char *line)
{
	char vm[128];
	unsigned long long a;
	int st;

	if (strcmp(line, "mode ok") == 0) {
		f->mode = MODE_OK;
	} else if (strcmp(line, "mode silent") == 0) {
		f->mode = MODE_SILENT;
	} else if (strncmp(line, "mode error ", 11) == 0) {
		f->mode = MODE_ERROR;
		snprintf(f->err_msg, sizeof(f->err_msg), "%s", line + 11);
	} else if (sscanf(line, "stats %llu", &a) == 1) {
		send_stats(f, a);
		return;
	} else if (sscanf(line, "report %127s %d %llu", vm, &st, &a) == 3) {
		send_report(f, vm, st, a);
		return;
	} else if (strcmp(line, "quit") == 0) {
		loop_stop(f->l);
		return;
	} else {
		out("unknown %s", line);
		return;
	}
	out("ok");
}

static void on_stdin(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct fake *f = arg;
	char ch;
	ssize_t n;

	while ((n = read(fd, &ch, 1)) == 1) {
		if (ch != '\n') {
			if (f->line_len < sizeof(f->line) - 1)
				f->line[f->line_len++] = ch;
			continue;
		}
		f->line[f->line_len] = '\0';
		f->line_len = 0;
		command(f, f->line);
		return; /* one line per wake-up; the fd stays readable */
	}
	if (n == 0)
		loop_stop(l); /* stdin closed: the test is gone */
}

static const struct bus_client_ops ops = {
	.on_message = on_message,
	.on_connected = on_connected,
	.on_disconnected = on_disconnected,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "manager", 1, NULL, 'm' },	  { "host-id", 1, NULL, 'i' },
		{ "memory-mib", 1, NULL, 'M' },	  { "cpus", 1, NULL, 'c' },
		{ "heartbeat-ms", 1, NULL, 'h' }, { "datastore", 1, NULL, 'd' },
		{ "pki-dir", 1, NULL, 'p' },	  { "join", 1, NULL, 'j' },
		{ "cpu-features", 1, NULL, 'f' }, { NULL, 0, NULL, 0 },
	};
	struct fake f = { .cpus = 4, .memory_mib = 8192 };
	struct bus_options o = { .heartbeat_ms = 200, .peer_timeout_ms = 3000 };
	const char *mgr = NULL, *pki = NULL, *join = NULL;
	struct bus_keys keys;
	char err[512], path[4096];
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			mgr = optarg;
			break;
		case 'i':
			f.host_id = optarg;
			break;
		case 'M':
			f.memory_mib = strtoull(optarg, NULL, 10);
			break;
		case 'c':
			f.cpus = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'h':
			o.heartbeat_ms = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			f.datastore = optarg;
			break;
		case 'p':
			pki = optarg;
			break;
		case 'j':
			join = optarg;
			break;
		case 'f':
			for (char *p = optarg; *p && f.n_cpu_features < 16;
			     p += *p == ',')
				f.cpu_features[f.n_cpu_features++] =
					(uint32_t)strtoul(p, &p, 0);
			break;
		default:
			return 2;
		}
	}
	if (!mgr || !f.host_id)
		die("usage: mgr_fake_agent --manager EP --host-id ID");
	log_set_level(LOG_WARN);
	if (join &&
	    bus_enrol(mgr, join, f.host_id, NULL, pki, err, sizeof(err)))
		die("enrol: %s", err);
	if (pki) {
		snprintf(path, sizeof(path), "%s/%s", pki, BUS_ENROL_KEYS);
		if (bus_keys_read(path, true, &keys, err, sizeof(err)))
			die("%s", err);
		o.curve_public_key = keys.public_key;
		o.curve_secret_key = keys.secret_key;
		o.curve_server_key = keys.server_key;
	}
	if (loop_create(&f.l) ||
	    bus_client_create(f.l, mgr, f.host_id, &o, &ops, &f, &f.bus) ||
	    sys_set_nonblock(0, 1) ||
	    loop_fd_add(f.l, 0, LOOP_READ, on_stdin, &f))
		die("cannot start");
	out("ready");
	if (loop_run(f.l))
		return 1;
	bus_client_destroy(f.bus);
	loop_destroy(f.l);
	return 0;
}
