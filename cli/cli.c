/* canopy CLI: errors and exit statuses, calls through the context, config. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/token.h"
#include "cli/pbjson.h"
#include "cli/trust.h"
#include "lib/config.h"
#include "lib/err.h"

/* Message gRPC gives a call whose own deadline passed. */
#define GRPC_LOCAL_DEADLINE "Deadline Exceeded"

static int status_line(struct cli *c, const struct cli_status *st);

int cli_fail(struct cli *c, int exit_code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->exit_code = exit_code;
	c->usage = exit_code == CLI_EXIT_USAGE;
	return exit_code == CLI_EXIT_USAGE ? -EINVAL : -EIO;
}

int cli_fail_status(struct cli *c, const struct cli_status *st)
{
	int rc = status_line(c, st);

	c->usage = false; /* the server's INVALID_ARGUMENT is its own line */
	return rc;
}

/* The useful end of gRPC's connect failure text ("Connection refused"). */
static const char *reach_why(const char *msg)
{
	static const char *const marks[] = { "remote host: ", "last error: " };
	const char *p;
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(marks); i++) {
		p = strstr(msg, marks[i]);
		if (p && p[strlen(marks[i])])
			return p + strlen(marks[i]);
	}
	return msg[0] ? msg : "no answer";
}

static int status_line(struct cli *c, const struct cli_status *st)
{
	enum cn_code code = (enum cn_code)st->code;
	int ex = cn_code_exit(code);

	if (st->unreachable)
		return cli_fail(c, ex,
				"cannot reach canopy-managerd at %s (from %s): "
				"%s; is canopy-managerd running? use --server "
				"or set server in ~/.config/canopy/config",
				c->server, c->server_from, reach_why(st->msg));
	if (code == CN_DEADLINE_EXCEEDED &&
	    !strcmp(st->msg, GRPC_LOCAL_DEADLINE))
		return cli_fail(c, ex,
				"no answer from canopy-managerd at %s within "
				"%.1f s; the server may be overloaded, or use "
				"--timeout SECONDS to wait longer",
				c->server, c->timeout_ms / 1000.0);
	if (!st->msg[0])
		return cli_fail(c, ex, "%s (%s)", cn_code_desc(code),
				cn_code_name(code));
	return cli_fail(c, ex, "%s", st->msg);
}

/* The channel to server i, made on first use once its CA is trusted
 * (cli/trust.h). -errno: failed (recorded), or unreachable with st
 * filled (st->unreachable) so the caller may try the next server. */
static int rpc_ready(struct cli *c, size_t i, struct cli_status *st)
{
	char *ca = NULL, tok[CLI_TOKEN_MAX];
	int rc;

	memset(st, 0, sizeof(*st));
	if (c->rpcs[i])
		return 0;
	rc = cli_trust_ca(c, c->addrs[i], &ca, st);
	if (rc)
		return rc;
	if (cli_token_load(c->addrs[i], tok, sizeof(tok)))
		tok[0] = '\0'; /* not logged in: only Login will work */
	rc = cli_rpc_open(c->addrs[i], ca, tok, &c->rpcs[i]);
	OPENSSL_cleanse(tok, sizeof(tok));
	free(ca);
	if (rc)
		return cli_fail(c, CLI_EXIT_FAIL,
				"cannot create a gRPC channel to %s",
				c->addrs[i]);
	return 0;
}

void cli_close(struct cli *c)
{
	size_t i;

	for (i = 0; i < CLI_SERVERS_MAX; i++) {
		cli_rpc_close(c->rpcs[i]);
		c->rpcs[i] = NULL;
	}
}

int cli_call(struct cli *c, const char *method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *resp_desc,
	     ProtobufCMessage **resp)
{
	struct cli_status st = { 0 }, first = { .unreachable = true };
	size_t k, i;
	int rc = -EIO;

	*resp = NULL;
	for (k = 0; k < c->naddrs; k++) {
		i = (c->cur + k) % c->naddrs;
		rc = rpc_ready(c, i, &st);
		if (rc && !st.unreachable)
			return rc;
		if (!rc)
			rc = cli_rpc_unary(c->rpcs[i], method, req, resp_desc,
					   c->timeout_ms, resp, &st);
		if (!rc) {
			c->cur = i;
			c->picked = true;
			return 0;
		}
		if (st.code != CN_UNAVAILABLE)
			break;
		/* Keep the first answer of a reachable server (a standby
		 * naming the leader says more than "connection refused"). */
		if (first.unreachable)
			first = st;
	}
	if (st.code == CN_UNAVAILABLE)
		st = first;
	(void)cli_fail_status(c, &st);
	return rc;
}

int cli_stream(struct cli *c, const char *method, const ProtobufCMessage *req,
	       struct cli_stream **out)
{
	Canopy__V1__GetClusterRequest gc =
		CANOPY__V1__GET_CLUSTER_REQUEST__INIT;
	ProtobufCMessage *resp;
	struct cli_status st;
	int rc;

	if (c->naddrs > 1 && !c->picked) {
		rc = cli_call(c, "/canopy.v1.ClusterService/GetCluster",
			      &gc.base, &canopy__v1__cluster__descriptor,
			      &resp);
		if (rc)
			return rc;
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	rc = rpc_ready(c, c->cur, &st);
	if (rc && st.unreachable)
		return cli_fail_status(c, &st);
	if (rc)
		return rc;
	rc = cli_rpc_stream_start(c->rpcs[c->cur], method, req,
				  c->timeout_given ? c->timeout_ms : 0, out);
	if (rc)
		return cli_fail(c, CLI_EXIT_FAIL, "cannot start %s: %s", method,
				strerror(-rc));
	return 0;
}

uint64_t cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cli_enum_text(char *buf, size_t size, const ProtobufCEnumDescriptor *d,
		   int v, const char *prefix)
{
	const char *name = cli_pb_enum_name(d, v);

	if (!name) {
		snprintf(buf, size, "%d", v);
		return;
	}
	cli_fmt_enum(buf, size, name, prefix);
}

void cli_print_json(struct cli *c, const ProtobufCMessage *m)
{
	struct cli_json j;

	cli_json_init(&j, c->out);
	cli_pb_json(&j, m);
	cli_json_finish(&j);
}

/* The config file's path in buf, or -ENOENT when there is no home. */
static int config_path_default(char *buf, size_t size)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/canopy/config", xdg);
	else if (home && home[0])
		n = snprintf(buf, size, "%s/.config/canopy/config", home);
	else
		return -ENOENT;
	return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* Parse a server list into c->addrs and keep it as given in c->server. */
static int servers_set(struct cli *c, const char *list, char *err,
		       size_t errlen)
{
	if (strlen(list) >= sizeof(c->server)) {
		snprintf(err, errlen, "server list too long");
		return -EINVAL;
	}
	if (cli_parse_server_list(list, c->addrs, &c->naddrs, err, errlen))
		return -EINVAL;
	snprintf(c->server, sizeof(c->server), "%s", list);
	c->cur = 0;
	return 0;
}

/* The servers named by the config file into c->addrs; -ENOENT when the
 * file or the key is absent. */
static int server_from_config(struct cli *c, const char *path)
{
	static const char *const keys[] = { "server", NULL };
	struct config *cfg = NULL;
	char cerr[CLI_ERR_MAX + 64], aerr[CLI_ERR_MAX];
	const char *v;
	int rc;

	rc = config_load(path, &cfg, cerr, sizeof(cerr));
	if (rc == -ENOENT)
		return -ENOENT;
	if (rc)
		return cli_fail(c, CLI_EXIT_USAGE, "%s", cerr);
	rc = config_check_keys(cfg, keys, cerr, sizeof(cerr));
	if (rc) {
		rc = cli_fail(c, CLI_EXIT_USAGE, "%s", cerr);
		goto out;
	}
	v = config_get(cfg, "server");
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	rc = servers_set(c, v, aerr, sizeof(aerr));
	if (rc)
		rc = cli_fail(c, CLI_EXIT_USAGE, "%s: %s", path, aerr);
out:
	config_free(cfg);
	return rc;
}

int cli_server_resolve(struct cli *c, const char *flag, const char *config_path)
{
	char *path = c->config_path;
	const size_t size = sizeof(c->config_path);
	const char *env = getenv("CANOPY_SERVER");
	char aerr[CLI_ERR_MAX];
	int rc;

	if (flag || (env && env[0])) {
		c->server_from = flag ? "--server" : "CANOPY_SERVER";
		if (servers_set(c, flag ? flag : env, aerr, sizeof(aerr)))
			return cli_fail(c, CLI_EXIT_USAGE, "%s: %s",
					c->server_from, aerr);
		return 0;
	}
	if (config_path) {
		snprintf(path, size, "%s", config_path);
		rc = 0;
	} else {
		rc = config_path_default(path, size);
	}
	if (!rc) {
		c->server_from = path;
		rc = server_from_config(c, path);
		if (rc != -ENOENT)
			return rc;
	}
	c->server_from = "the default";
	return servers_set(c, CLI_DEFAULT_SERVER, aerr, sizeof(aerr));
}

int cli_call_say(struct cli *c, const char *method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *resp_desc, const char *line)
{
	ProtobufCMessage *resp;
	int rc = cli_call(c, method, req, resp_desc, &resp);

	if (rc)
		return rc;
	if (c->json)
		cli_print_json(c, resp);
	else
		fprintf(c->out, "%s\n", line);
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}
