/* canopy-agent: command line and configuration, set-up, the bus callbacks
 * and the main loop. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "lib/bus.h"
#include "lib/config.h"
#include "lib/opts.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

static const char usage[] =
	"usage: canopy-agent --manager tcp://HOST:PORT --host-id ID --run-dir DIR\n"
	"                    [--vmm PATH] [--address ADDR] [--datastore NAME=DEV]...\n"
	"                    [--ds-slots FIRST-LAST] [--stats-interval SEC]\n"
	"                    [--manager-timeout SEC]\n"
	"                    [--pki-dir DIR [--join TOKEN]]\n"
	"                    [--curve-server-key KEY --curve-keys FILE]\n"
	"                    [--image-ca-file PEM] [--vmm-uids FIRST-LAST]\n"
	"                    [--log-level LEVEL] [--log-file PATH]\n"
	"                    [--config FILE]\n"
	"A --config FILE holds the same keys as 'key = value' lines (datastore:\n"
	"a comma-separated list); options on the command line win.\n";

/* The options as given: the agent's own, and the strings validate()
 * checks into them. */
struct cmdline {
	struct agent_opts o;
	const char *stats, *mgr_timeout, *ds_slots, *log_level, *log_file;
	const char *vmm_uids;
	char *ds_list; /* datastore list from the config file (strtok'd) */
};

/* Options the handler takes. */
enum { AGENT_OPT_DATASTORE };

#define STR(n, fld) OPT_STR(n, struct cmdline, fld)
static const struct opt_def opt_defs[] = {
	STR("manager", o.manager),
	STR("host-id", o.host_id),
	STR("run-dir", o.run_dir),
	STR("vmm", o.vmm),
	STR("address", o.address),
	{ .name = "datastore", .kind = OPT_CALL, .id = AGENT_OPT_DATASTORE },
	STR("stats-interval", stats),
	STR("manager-timeout", mgr_timeout),
	STR("ds-slots", ds_slots),
	STR("pki-dir", o.pki_dir),
	STR("join", o.join_token),
	STR("curve-server-key", o.curve_server_key),
	STR("curve-keys", o.curve_keys),
	STR("image-ca-file", o.image_ca_file),
	STR("vmm-uids", vmm_uids),
	STR("log-file", log_file),
	STR("log-level", log_level),
	{ 0 },
};
#undef STR

static int add_datastore(struct agent_opts *o, const char *s)
{
	if (o->n_datastores >= AGENT_DATASTORES_MAX) {
		fprintf(stderr, "canopy-agent: more than %d --datastore\n",
			AGENT_DATASTORES_MAX);
		return -E2BIG;
	}
	o->datastores[o->n_datastores++] = s;
	return 0;
}

/* --datastore NAME=DEV (again for each); in the config file, one
 * comma-separated list. */
static int on_option(void *base, int id, const char *val, bool from_config)
{
	struct cmdline *cl = base;
	char *save = NULL, *tok;

	if (!from_config)
		return add_datastore(&cl->o, val);
	cl->ds_list = strdup(val);
	if (!cl->ds_list)
		return -ENOMEM;
	for (tok = strtok_r(cl->ds_list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (add_datastore(&cl->o, tok) < 0)
			return -EINVAL;
	return 0;
}

static const struct opt_prog agent_prog = {
	.name = "canopy-agent",
	.usage = usage,
	.defs = opt_defs,
	.handle = on_option,
};

/* NAME=DEV with NAME a VM-id-like word and DEV an existing path. */
static int check_datastore(const char *s)
{
	const char *eq = strchr(s, '=');
	char name[AGENT_VM_ID_MAX + 1], msg[200];
	struct stat sb;

	if (!eq || eq == s || (size_t)(eq - s) > AGENT_VM_ID_MAX || !eq[1]) {
		fprintf(stderr,
			"canopy-agent: --datastore %s: expected NAME=DEV\n", s);
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - s), s);
	if (agent_vm_id_check(name, msg, sizeof(msg)) < 0) {
		fprintf(stderr,
			"canopy-agent: --datastore %s: bad name "
			"(use a-z, 0-9 and '-')\n",
			s);
		return -EINVAL;
	}
	if (stat(eq + 1, &sb) < 0) {
		fprintf(stderr, "canopy-agent: --datastore %s: %s\n", s,
			strerror(errno));
		return -ENOENT;
	}
	return 0;
}

/* FIRST-LAST within 1..AGENT_DS_SLOTS_MAX. */
static int parse_slots(const char *s, struct agent_opts *o)
{
	unsigned a, b;
	char end;

	if (sscanf(s, "%u-%u%c", &a, &b, &end) != 2 || a < 1 || a > b ||
	    b > AGENT_DS_SLOTS_MAX || s[0] == '-' || s[0] == '+') {
		fprintf(stderr,
			"canopy-agent: --ds-slots %s: give FIRST-LAST with "
			"1 <= FIRST <= LAST <= %d (datastore heartbeat slots "
			"no other host uses)\n",
			s, AGENT_DS_SLOTS_MAX);
		return -EINVAL;
	}
	o->ds_slot_first = a;
	o->ds_slot_last = b;
	return 0;
}

/* 1..3600 seconds, into ms. */
static int parse_secs(const char *what, const char *s, uint32_t *ms)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || v < 1 || v > 3600) {
		fprintf(stderr, "canopy-agent: %s %s: give 1 to 3600 seconds\n",
			what, s);
		return -EINVAL;
	}
	*ms = (uint32_t)v * 1000;
	return 0;
}

/* The required options and logging. */
static int validate_base(struct agent_opts *o, struct cmdline *cl)
{
	enum log_level lvl;
	int rc;

	if (!o->manager || !o->host_id || !o->run_dir) {
		fprintf(stderr,
			"canopy-agent: --manager, --host-id and "
			"--run-dir are required\n%s",
			usage);
		return -EINVAL;
	}
	if (!bus_host_id_valid(o->host_id)) {
		fprintf(stderr,
			"canopy-agent: --host-id %s: use 1 to %d "
			"characters of A-Z, a-z, 0-9, '.', '_' and '-'\n",
			o->host_id, BUS_HOST_ID_MAX);
		return -EINVAL;
	}
	if (o->run_dir[0] != '/' || strlen(o->run_dir) > AGENT_PATH_MAX - 80) {
		fprintf(stderr,
			"canopy-agent: --run-dir %s: give an absolute "
			"path of at most %d bytes\n",
			o->run_dir, AGENT_PATH_MAX - 80);
		return -EINVAL;
	}
	if (cl->log_level) {
		if (log_level_parse(cl->log_level, &lvl) < 0) {
			fprintf(stderr,
				"canopy-agent: --log-level %s: expected "
				"debug, info, warn or error\n",
				cl->log_level);
			return -EINVAL;
		}
		log_set_level(lvl);
	}
	if (cl->log_file && (rc = log_open_file(cl->log_file)) < 0) {
		fprintf(stderr, "canopy-agent: --log-file %s: %s\n",
			cl->log_file, cn_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

static int validate(struct agent_opts *o, struct cmdline *cl)
{
	if (validate_base(o, cl) < 0)
		return -EINVAL;
	o->stats_interval_ms = AGENT_STATS_INTERVAL_S_DEFAULT * 1000;
	if (cl->stats && parse_secs("--stats-interval", cl->stats,
				    &o->stats_interval_ms) < 0)
		return -EINVAL;
	o->manager_timeout_ms = AGENT_MANAGER_TIMEOUT_S_DEFAULT * 1000;
	if (cl->mgr_timeout && parse_secs("--manager-timeout", cl->mgr_timeout,
					  &o->manager_timeout_ms) < 0)
		return -EINVAL;
	for (size_t i = 0; i < o->n_datastores; i++)
		if (check_datastore(o->datastores[i]) < 0)
			return -EINVAL;
	if (cl->ds_slots && parse_slots(cl->ds_slots, o) < 0)
		return -EINVAL;
	if (cl->vmm_uids &&
	    agent_vmm_uids_parse(cl->vmm_uids, &o->vmm_uid_first,
				 &o->vmm_uid_last) < 0) {
		fprintf(stderr,
			"canopy-agent: --vmm-uids %s: give FIRST-LAST with "
			"1 <= FIRST <= LAST <= 2147483646, not spanning 65534 "
			"(uids no user and no other host agent here uses)\n",
			cl->vmm_uids);
		return -EINVAL;
	}
	if (!o->curve_server_key != !o->curve_keys) {
		fprintf(stderr, "canopy-agent: --curve-server-key and "
				"--curve-keys go together\n");
		return -EINVAL;
	}
	if (o->join_token && !o->pki_dir) {
		fprintf(stderr, "canopy-agent: --join needs --pki-dir DIR, "
				"where the host's keys are kept\n");
		return -EINVAL;
	}
	if (o->pki_dir && o->curve_keys) {
		fprintf(stderr, "canopy-agent: give --pki-dir or --curve-keys, "
				"not both\n");
		return -EINVAL;
	}
	if (o->curve_server_key && !bus_key_valid(o->curve_server_key)) {
		fprintf(stderr,
			"canopy-agent: --curve-server-key: give the "
			"manager's public key, %d characters of Z85\n",
			BUS_CURVE_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

/* The default VMM: canopy-vmm beside this binary. */
static const char *default_vmm(void)
{
	static char path[AGENT_PATH_MAX];
	char self[AGENT_PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return "canopy-vmm";
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/canopy-vmm", dirname(self));
	return path;
}

/* ---- bus callbacks ------------------------------------------------------ */

static void on_message(void *arg, const Canopy__V1__Envelope *env)
{
	struct agent *ag = arg;
	char msg[200];

	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_VM_COMMAND &&
	    env->request_id) {
		agent_command_handle(ag, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_CONSOLE_READ &&
	    env->request_id) {
		agent_console_handle(ag, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_CONSOLE_INPUT &&
	    env->request_id) {
		agent_console_input_handle(ag, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_IMAGE_IMPORT &&
	    env->request_id) {
		agent_image_handle(ag, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_IMAGE_CANCEL &&
	    env->request_id) {
		agent_image_cancel(ag, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_DATASTORE_LIST &&
	    env->request_id) {
		agent_ds_list_handle(ag, env);
		return;
	}
	if (agent_migrate_dispatch(ag, env))
		return;
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_VM_COMMAND ||
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_CONSOLE_READ ||
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_IMAGE_IMPORT ||
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_IMAGE_CANCEL ||
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_DATASTORE_LIST)
		snprintf(msg, sizeof(msg),
			 "a VmCommand, ConsoleRead, ImageImport, ImageCancel "
			 "or DatastoreList must be a request (request_id "
			 "set)");
	else
		snprintf(msg, sizeof(msg),
			 "canopy-agent does not accept "
			 "envelope body %d from the manager",
			 (int)env->body_case);
	if (agent_bad_log_ok(ag))
		log_warn("agent", "message refused", "request=%llu why=\"%s\"",
			 (unsigned long long)env->request_id, msg);
	if (env->request_id)
		agent_reply(ag, env->request_id, CN_INVALID_ARGUMENT, msg);
}

static void on_connected(void *arg)
{
	struct agent *ag = arg;

	log_info("agent", "manager connected", "manager=%s", ag->opts.manager);
	agent_host_register(ag);
}

static void on_disconnected(void *arg)
{
	struct agent *ag = arg;

	log_warn("agent", "manager unreachable; VMs keep running", "manager=%s",
		 ag->opts.manager);
}

static void heartbeat_fill(void *arg, Canopy__V1__AgentHeartbeat *hb)
{
	struct agent *ag = arg;

	hb->running_vms = 0;
	for (struct agent_vm *vm = ag->vms; vm; vm = vm->next)
		hb->running_vms += agent_vm_active(vm) ? 1 : 0;
}

static const struct bus_client_ops bus_ops = {
	.on_message = on_message,
	.on_connected = on_connected,
	.on_disconnected = on_disconnected,
	.heartbeat_fill = heartbeat_fill,
};

/* ---- loop --------------------------------------------------------------- */

static int on_stats_timer(struct loop *l, uint64_t id, void *arg)
{
	struct agent *ag = arg;

	if (bus_client_connected(ag->bus))
		agent_stats_round(ag);
	return (int)ag->opts.stats_interval_ms;
}

static void on_signal(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct signalfd_siginfo si;

	if (sys_read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		log_info("agent", "stopping; VMs keep running", "signal=%u",
			 si.ssi_signo);
	loop_stop(l);
}

static int mkdir_p(const char *dir)
{
	char p[AGENT_PATH_MAX];

	snprintf(p, sizeof(p), "%s", dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup_signals(struct agent *ag)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	ag->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (ag->sigfd < 0)
		return -errno;
	return loop_fd_add(ag->loop, ag->sigfd, LOOP_READ, on_signal, ag);
}

/* Create the loop, the run directory, the VM table and the bus. */
static int agent_start(struct agent *ag)
{
	struct bus_options bo = {
		.peer_timeout_ms = ag->opts.manager_timeout_ms,
		.heartbeat_ms = CN_MIN(BUS_HEARTBEAT_MS_DEFAULT,
				       ag->opts.manager_timeout_ms / 4),
	};
	char msg[512];
	int rc, err = 0;

	if (agent_curve_setup(ag, &bo, msg, sizeof(msg)) < 0)
		die("%s%s", ag->opts.curve_keys ? "--curve-keys " : "", msg);

	snprintf(ag->vms_dir, sizeof(ag->vms_dir), "%s/vms", ag->opts.run_dir);
	rc = mkdir_p(ag->vms_dir);
	if (rc < 0)
		die("run directory %s: %s", ag->vms_dir, cn_strerror(rc));
	rc = loop_create(&ag->loop);
	if (rc < 0)
		die("event loop: %s", cn_strerror(rc));
	rc = setup_signals(ag);
	if (rc < 0)
		die("signals: %s", cn_strerror(rc));
	rc = agent_vms_scan(ag);
	if (rc < 0)
		die("scan %s: %s", ag->vms_dir, cn_strerror(rc));
	rc = bus_client_create(ag->loop, ag->opts.manager, ag->opts.host_id,
			       &bo, &bus_ops, ag, &ag->bus);
	if (rc < 0)
		die("--manager %s: %s", ag->opts.manager, cn_strerror(rc));
	ag->stats_timer = loop_timer_add(ag->loop, ag->opts.stats_interval_ms,
					 on_stats_timer, ag, &err);
	if (!ag->stats_timer)
		die("stats timer: %s", cn_strerror(err));
	return 0;
}

int main(int argc, char **argv)
{
	struct agent ag = { .sigfd = -1 };
	struct cmdline cl = { 0 };
	struct config *keep = NULL;
	int rc;

	rc = opt_parse(&agent_prog, argc, argv, &cl, &keep);
	if (rc == 0)
		rc = validate(&cl.o, &cl);
	if (rc != 0) {
		config_free(keep);
		free(cl.ds_list);
		return rc == OPT_HELP ? 0 : 2;
	}
	ag.opts = cl.o;
	if (!ag.opts.vmm)
		ag.opts.vmm = default_vmm();
	if (agent_images_init(&ag) < 0 || agent_start(&ag) < 0)
		return 1;
	log_info("agent", "started", "host=%s manager=%s run_dir=%s vmm=%s",
		 ag.opts.host_id, ag.opts.manager, ag.opts.run_dir,
		 ag.opts.vmm);
	rc = loop_run(ag.loop);
	/* Leave every VMM running: they are in their own sessions. */
	ag.stats_round = 0;
	agent_create_join_all(&ag);
	agent_images_stop_all(&ag);
	agent_ds_list_join_all(&ag);
	while (ag.vms)
		agent_vm_free(&ag, ag.vms);
	bus_client_destroy(ag.bus);
	loop_fd_del(ag.loop, ag.sigfd, LOOP_READ);
	sys_close(ag.sigfd);
	loop_destroy(ag.loop);
	config_free(keep);
	free(cl.ds_list);
	return rc < 0 ? 1 : 0;
}
