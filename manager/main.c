/* canopy-managerd: options, start-up, the event loop and shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/bus_keys.h"
#include "lib/config.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "manager/index.h"
#include "manager/auth_kdf.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"
#include "manager/hosts.h"
#include "manager/tls.h"
#include "vmotion/orch.h"

/* Options as given on the command line or in the config file. */
struct args {
	const char *etcd, *listen, *bus, *id, *host_timeout, *cmd_timeout;
	const char *level, *config, *log_file, *task_keep, *event_keep;
	const char *image_max; /* --image-max-bytes */
	int image_http; /* --image-allow-http */
	const char *mig_limit; /* --migrations-per-host */
	const char *state_dir; /* --state-dir: pki/ from 'cluster init' */
	const char *etcd_ca, *etcd_cert, *etcd_key; /* etcd TLS files */
	const char *admin_pw, *audit_file; /* users and audit */
	const char *token_ttl, *lock_failures, *lock_s;
};

/* Where the manager keeps its state (the TLS files) unless told. */
#define MGR_STATE_DIR_DEFAULT "/var/lib/canopy/manager"

static void usage(FILE *f)
{
	fputs("usage: canopy-managerd --etcd URL[,URL...] [--listen HOST:PORT]\n"
	      "         [--bus tcp://HOST:PORT] [--id NAME] [--host-timeout SEC]\n"
	      "         [--command-timeout MS] [--log-level LEVEL]\n"
	      "         [--task-retention SEC] [--event-retention COUNT]\n"
	      "         [--log-file PATH] [--config FILE]\n"
	      "         [--image-max-bytes BYTES] [--image-allow-http]\n"
	      "         [--migrations-per-host N] [--state-dir DIR]\n"
	      "         [--etcd-cacert FILE [--etcd-cert FILE --etcd-key FILE]]\n"
	      "         [--admin-password-file FILE] [--audit-file FILE]\n"
	      "         [--token-ttl SEC] [--lockout-failures N]\n"
	      "         [--lockout-seconds SEC]\n"
	      "defaults: --listen 127.0.0.1:7443 --bus tcp://127.0.0.1:7444\n"
	      "          --state-dir " MGR_STATE_DIR_DEFAULT "\n"
	      "          (the API serves TLS only, with DIR/pki/manager.crt\n"
	      "          and .key: create them with 'canopy cluster init\n"
	      "          --state-dir DIR'); etcd is plaintext unless\n"
	      "          --etcd-cacert is given\n"
	      "          --id <hostname> --host-timeout 10\n"
	      "          --command-timeout 30000 --log-level info\n"
	      "          --task-retention 86400 --event-retention 100000\n"
	      "          --audit-file DIR/audit-ID.log (DIR: --state-dir)\n"
	      "          --token-ttl 3600 --lockout-failures 5\n"
	      "          --lockout-seconds 300; every API call but Login\n"
	      "          needs a token; with no user yet, the first leader\n"
	      "          makes 'admin' (Administrator on the cluster) with\n"
	      "          the password in --admin-password-file\n"
	      "config file keys: etcd, listen, bus, id, host_timeout,\n"
	      "          command_timeout_ms, task_retention_s, event_retention,\n"
	      "          log_level, log_file, state_dir, etcd_cacert,\n"
	      "          etcd_cert, etcd_key, admin_password_file, audit_file,\n"
	      "          token_ttl_s, lockout_failures, lockout_s\n",
	      f);
}

static void parse_argv(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		{ "etcd", 1, NULL, 'e' },
		{ "listen", 1, NULL, 'l' },
		{ "bus", 1, NULL, 'b' },
		{ "id", 1, NULL, 'i' },
		{ "host-timeout", 1, NULL, 't' },
		{ "command-timeout", 1, NULL, 'T' },
		{ "log-level", 1, NULL, 'v' },
		{ "log-file", 1, NULL, 'f' },
		{ "task-retention", 1, NULL, 'R' },
		{ "event-retention", 1, NULL, 'E' },
		{ "config", 1, NULL, 'c' },
		{ "image-max-bytes", 1, NULL, 'M' },
		{ "image-allow-http", 0, NULL, 'H' },
		{ "migrations-per-host", 1, NULL, 'P' },
		{ "state-dir", 1, NULL, 'S' },
		{ "etcd-cacert", 1, NULL, 'A' },
		{ "etcd-cert", 1, NULL, 'C' },
		{ "etcd-key", 1, NULL, 'K' },
		{ "admin-password-file", 1, NULL, 'W' },
		{ "audit-file", 1, NULL, 'U' },
		{ "token-ttl", 1, NULL, 'k' },
		{ "lockout-failures", 1, NULL, 'F' },
		{ "lockout-seconds", 1, NULL, 'L' },
		{ "help", 0, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'e':
			a->etcd = optarg;
			break;
		case 'l':
			a->listen = optarg;
			break;
		case 'b':
			a->bus = optarg;
			break;
		case 'i':
			a->id = optarg;
			break;
		case 't':
			a->host_timeout = optarg;
			break;
		case 'T':
			a->cmd_timeout = optarg;
			break;
		case 'v':
			a->level = optarg;
			break;
		case 'f':
			a->log_file = optarg;
			break;
		case 'c':
			a->config = optarg;
			break;
		case 'R':
			a->task_keep = optarg;
			break;
		case 'E':
			a->event_keep = optarg;
			break;
		case 'M':
			a->image_max = optarg;
			break;
		case 'H':
			a->image_http = 1;
			break;
		case 'P':
			a->mig_limit = optarg;
			break;
		case 'S':
			a->state_dir = optarg;
			break;
		case 'A':
			a->etcd_ca = optarg;
			break;
		case 'C':
			a->etcd_cert = optarg;
			break;
		case 'K':
			a->etcd_key = optarg;
			break;
		case 'W':
			a->admin_pw = optarg;
			break;
		case 'U':
			a->audit_file = optarg;
			break;
		case 'k':
			a->token_ttl = optarg;
			break;
		case 'F':
			a->lock_failures = optarg;
			break;
		case 'L':
			a->lock_s = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc)
		die("unexpected argument '%s'; see --help", argv[optind]);
}

/* Fill options left unset on the command line from the config file. */
static struct config *load_config(struct args *a)
{
	static const char *const keys[] = {
		"etcd",
		"listen",
		"bus",
		"id",
		"host_timeout",
		"command_timeout_ms",
		"log_level",
		"log_file",
		"state_dir",
		"etcd_cacert",
		"etcd_cert",
		"etcd_key",
		"admin_password_file",
		"audit_file",
		"token_ttl_s",
		"lockout_failures",
		"lockout_s",
		NULL,
	};
	struct config *cf = NULL;
	char err[512];

	if (!a->config)
		return NULL;
	if (config_load(a->config, &cf, err, sizeof(err)) ||
	    config_check_keys(cf, keys, err, sizeof(err)))
		die("%s", err);
#define FROM(field, key) \
	if (!a->field)   \
		a->field = config_get(cf, key);
	FROM(etcd, "etcd")
	FROM(listen, "listen")
	FROM(bus, "bus")
	FROM(id, "id")
	FROM(host_timeout, "host_timeout")
	FROM(cmd_timeout, "command_timeout_ms")
	FROM(level, "log_level")
	FROM(log_file, "log_file")
	FROM(task_keep, "task_retention_s")
	FROM(event_keep, "event_retention")
	FROM(state_dir, "state_dir")
	FROM(etcd_ca, "etcd_cacert")
	FROM(etcd_cert, "etcd_cert")
	FROM(etcd_key, "etcd_key")
	FROM(admin_pw, "admin_password_file")
	FROM(audit_file, "audit_file")
	FROM(token_ttl, "token_ttl_s")
	FROM(lock_failures, "lockout_failures")
	FROM(lock_s, "lockout_s")
#undef FROM
	return cf;
}

static unsigned number(const char *s, const char *what, unsigned lo,
		       unsigned hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		die("%s '%s' is not a number in %u..%u", what, s, lo, hi);
	return (unsigned)v;
}

/* The agent bus's CURVE key (hosts.h); its secret stays in m only. */
static void bus_keys_load(struct manager *m, char *err, size_t errlen)
{
	struct bus_keys k;

	if (mgr_bus_key_load(m->opt.state_dir, &k, err, errlen))
		die("the agent bus key: %s", err);
	memcpy(m->bus_secret, k.secret_key, sizeof(m->bus_secret));
	memcpy(m->bus_public, k.public_key, sizeof(m->bus_public));
	OPENSSL_cleanse(&k, sizeof(k));
	log_info("manager", "agent bus is CURVE", "public_key=%s",
		 m->bus_public);
}

/* Users and audit (auth_mgr.h). The audit file's path is kept for the
 * process's life: it is built here from the state directory. */
static void auth_options_set(struct manager *m, struct args *a)
{
	static char audit[4096];

	m->opt.admin_password_file = a->admin_pw;
	if (!a->audit_file) {
		snprintf(audit, sizeof(audit), "%s/audit-%s.log",
			 a->state_dir ? a->state_dir : MGR_STATE_DIR_DEFAULT,
			 m->opt.id);
		a->audit_file = audit;
	}
	m->opt.audit_file = a->audit_file;
	m->opt.token_ttl_s =
		a->token_ttl ? number(a->token_ttl, "--token-ttl", 10, 604800) :
			       MGR_TOKEN_TTL_S_DEFAULT;
	m->opt.lockout_failures =
		a->lock_failures ? number(a->lock_failures,
					  "--lockout-failures", 1, 1000) :
				   MGR_LOCKOUT_FAILURES_DEFAULT;
	m->opt.lockout_s =
		a->lock_s ? number(a->lock_s, "--lockout-seconds", 1, 86400) :
			    MGR_LOCKOUT_S_DEFAULT;
}

static void options_set(struct manager *m, struct args *a)
{
	enum log_level lv;

	if (!a->etcd || !*a->etcd)
		die("--etcd is required (e.g. --etcd 127.0.0.1:2379)");
	m->opt.etcd = a->etcd;
	m->opt.listen = a->listen ? a->listen : "127.0.0.1:7443";
	m->opt.bus = a->bus ? a->bus : "tcp://127.0.0.1:7444";
	m->opt.state_dir = a->state_dir ? a->state_dir : MGR_STATE_DIR_DEFAULT;
	if (a->id)
		snprintf(m->opt.id, sizeof(m->opt.id), "%s", a->id);
	else if (gethostname(m->opt.id, sizeof(m->opt.id) - 1))
		die("cannot read the hostname; give --id");
	if (!mgr_name_valid(MGR_NAME_HOST, m->opt.id))
		die("--id '%s' must be 1..64 characters of A-Z a-z 0-9 . _ -",
		    m->opt.id);
	m->opt.host_timeout_s =
		a->host_timeout ?
			number(a->host_timeout, "--host-timeout", 1, 3600) :
			10;
	m->opt.command_timeout_ms = a->cmd_timeout ? number(a->cmd_timeout,
							    "--command-timeout",
							    1, 3600000) :
						     30000;
	m->opt.lease_ttl_s = MGR_LEASE_TTL_S;
	m->opt.task_retention_s =
		a->task_keep ?
			number(a->task_keep, "--task-retention", 1, 100000000) :
			86400;
	m->opt.event_retention = a->event_keep ? number(a->event_keep,
							"--event-retention", 1,
							1000000000) :
						 100000;
	m->opt.migrations_per_host =
		a->mig_limit ?
			number(a->mig_limit, "--migrations-per-host", 1, 64) :
			VMO_HOST_LIMIT_DEFAULT;
	m->opt.image_max_bytes = MGR_IMAGE_MAX_BYTES_DEFAULT;
	if (a->image_max &&
	    mgr_image_size_parse(a->image_max, &m->opt.image_max_bytes))
		die("--image-max-bytes '%s' is not a size of 1 byte .. 16 EiB "
		    "(suffix K, M, G or T for KiB..TiB)",
		    a->image_max);
	m->opt.image_allow_http = a->image_http != 0;
	auth_options_set(m, a);
	if (a->level && log_level_parse(a->level, &lv))
		die("--log-level '%s': use debug, info, warn or error",
		    a->level);
	if (a->level)
		log_set_level(lv);
	if (a->log_file && log_open_file(a->log_file))
		die("cannot open log file %s", a->log_file);
}

static void on_signal(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		log_info("manager", "signal received, stopping", "signal=%u",
			 si.ssi_signo);
	loop_stop(l);
}

static int signals_setup(struct loop *l)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	return loop_fd_add(l, fd, LOOP_READ, on_signal, NULL);
}

static void start(struct manager *m, const struct args *a, struct mgr_tls *tls)
{
	struct etcd_options eo = { .request_timeout_ms = MGR_ETCD_TIMEOUT_MS,
				   .ca_file = a->etcd_ca,
				   .cert_file = a->etcd_cert,
				   .key_file = a->etcd_key };
	const char *why = NULL;
	struct api_tls at;
	char err[8192];
	int rc;

	if (loop_create(&m->l) || signals_setup(m->l))
		die("cannot create the event loop");
	rc = etcd_client_create(m->opt.etcd, &eo, &m->etcd, &why);
	if (rc)
		die("--etcd '%s'%s: %s", m->opt.etcd,
		    a->etcd_ca ? " (with the etcd TLS files)" : "",
		    why && why[0] ? why : cn_strerror(rc));
	/* Before anything runs: a manager without its certificate stops. */
	if (mgr_tls_load(m->opt.state_dir, tls, err, sizeof(err)))
		die("%s", err);
	bus_keys_load(m, err, sizeof(err));
	rc = mgr_index_start(m);
	if (rc)
		die("cannot start the inventory index: %s", cn_strerror(rc));
	mgr_tls_api(tls, &at);
	rc = api_server_create(m->l, m->opt.listen, &at, mgr_api_gate_auth, m,
			       &m->api);
	if (rc)
		die("cannot serve the API over TLS on %s: %s (is another "
		    "manager there? is DIR/pki/manager.crt a valid "
		    "certificate?)",
		    m->opt.listen, cn_strerror(rc));
	rc = mgr_leader_start(m);
	if (rc)
		die("cannot start the election: %s", cn_strerror(rc));
}

int main(int argc, char **argv)
{
	struct manager m = { 0 };
	struct args a = { 0 };
	struct mgr_tls tls;
	struct config *cf;
	int rc;

	parse_argv(argc, argv, &a);
	cf = load_config(&a);
	options_set(&m, &a);
	start(&m, &a, &tls);
	log_info("manager", "canopy-managerd started",
		 "id=%s api=%s (TLS) bus=%s etcd=%s%s ca_sha256=%s", m.opt.id,
		 m.opt.listen, m.opt.bus, m.opt.etcd, a.etcd_ca ? " (TLS)" : "",
		 tls.fingerprint);
	rc = loop_run(m.l);
	mgr_leader_stop(&m);
	mgr_kdf_drain(&m); /* password threads post to the loop and the API */
	api_server_destroy(m.api);
	mgr_index_stop(&m);
	etcd_client_destroy(m.etcd);
	loop_destroy(m.l);
	mgr_tls_clear(&tls);
	config_free(cf);
	log_info("manager", "canopy-managerd stopped");
	return rc ? 1 : 0;
}
