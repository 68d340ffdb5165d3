/* canopy: the operator CLI of canopy-managerd (docs/cli.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define USAGE_LINE                                                          \
	"usage: canopy [--server HOST:PORT] [-o table|json] [--timeout S] " \
	"<object> <verb> [args] (canopy --help)"

/* Options every command accepts, before or after the object and verb. */
static const struct cli_optdef global_opts[] = {
	{ .name = "server", .has_arg = true },
	{ .name = "output", .shortc = 'o', .has_arg = true },
	{ .name = "timeout", .has_arg = true },
	{ .name = "ca", .has_arg = true },
	{ .name = "trust-fingerprint", .has_arg = true },
	{ .name = "help", .shortc = 'h' },
	{ 0 },
};

static int completion(struct cli *c, const struct cli_args *a);

static const struct cli_cmd completion_cmds[] = {
	{ .object = "completion",
	  .verb = "bash",
	  .args = "",
	  .summary = "Print a bash completion script: "
		     "source <(canopy completion bash)",
	  .run = completion },
	{ 0 },
};

static const struct cli_object objects[] = {
	{ "cluster", "the cluster as a whole", cli_cluster_cmds },
	{ "host", "hosts running canopy-agent", cli_host_cmds },
	{ "datastore", "shared datastores", cli_datastore_cmds },
	{ "vm", "virtual machines", cli_vm_cmds },
	{ "image", "importing disk images into datastores", cli_image_cmds },
	{ "task", "long operations and their progress", cli_task_cmds },
	{ "event", "the cluster's event log", cli_event_cmds },
	{ "session", "logging in: login, logout, whoami", cli_session_cmds },
	{ "user", "users of the API", cli_user_cmds },
	{ "role", "roles: named sets of privileges", cli_role_cmds },
	{ "permission", "roles granted to users on objects",
	  cli_permission_cmds },
	{ "audit", "the audit log of changes and denied calls",
	  cli_audit_cmds },
	{ "completion", "shell completion", completion_cmds },
};

static int completion(struct cli *c, const struct cli_args *a)
{
	cli_completion_bash(c->out, objects, CN_ARRAY_SIZE(objects),
			    global_opts);
	return 0;
}

static const char global_help[] =
	"global options (anywhere on the line):\n"
	"  --server HOST:PORT  canopy-managerd's API address, or a comma-"
	"separated list\n"
	"                      of managers tried in turn (default: "
	"CANOPY_SERVER,\n"
	"                      then 'server =' in ~/.config/canopy/config, "
	"then " CLI_DEFAULT_SERVER ")\n"
	"  -o, --output FMT    table (default) or json\n"
	"  --timeout SECONDS   deadline of each call (default 30; also bounds\n"
	"                      task waits and event streams when given)\n"
	"  --ca FILE           verify the manager against this cluster CA "
	"(PEM;\n"
	"                      also CANOPY_CA) instead of the CA trusted for "
	"it\n"
	"  --trust-fingerprint SHA256\n"
	"                      trust an unknown manager whose cluster CA has "
	"this\n"
	"                      fingerprint, and remember it in\n"
	"                      ~/.config/canopy/trusted/ (on a terminal "
	"canopy asks)\n"
	"  -h, --help          this help\n";

static void help_top(void)
{
	size_t i;

	printf("%s\n\ncanopy drives a Canopy cluster through canopy-managerd."
	       "\n\nobjects:\n",
	       USAGE_LINE);
	for (i = 0; i < CN_ARRAY_SIZE(objects); i++)
		printf("  %-10s %s\n", objects[i].name, objects[i].summary);
	printf("\n%s\nexit status: 0 ok, 1 failed, 2 usage or invalid "
	       "argument, 3 not found,\n4 already exists, 5 failed "
	       "precondition, 6 permission, 7 server unavailable or\n"
	       "timed out. 'canopy OBJECT --help' lists an object's verbs.\n",
	       global_help);
}

static void help_object(int i)
{
	const struct cli_cmd *k;

	printf("usage: canopy %s <verb> [args]\n\n%s. verbs:\n",
	       objects[i].name, objects[i].summary);
	for (k = objects[i].cmds; k->object; k++)
		printf("  %s %s %s\n      %s\n", k->object, k->verb, k->args,
		       k->summary);
	printf("\n%s", global_help);
}

static void help_cmd(const struct cli_cmd *k)
{
	printf("usage: canopy %s %s %s\n\n%s\n", k->object, k->verb, k->args,
	       k->summary);
	if (k->help)
		printf("\noptions:\n%s", k->help);
	printf("\n%s", global_help);
}

/* Usage error: one line saying what is wrong, the usage line, exit 2. */
static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "canopy: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s\n", USAGE_LINE);
	return CLI_EXIT_USAGE;
}

/* Does word take the following word as a global option's value? */
static bool global_takes_value(const char *w)
{
	return !strcmp(w, "--server") || !strcmp(w, "--output") ||
	       !strcmp(w, "-o") || !strcmp(w, "--timeout") ||
	       !strcmp(w, "--ca") || !strcmp(w, "--trust-fingerprint");
}

/* Index of the first positional word at or after from (skipping options
 * and global options' values), argc when there is none. */
static int next_word(int argc, char **argv, int from)
{
	int k;

	for (k = from; k < argc; k++) {
		if (!strcmp(argv[k], "--"))
			return k + 1 < argc ? k + 1 : argc;
		if (argv[k][0] != '-' || !argv[k][1])
			return k;
		if (global_takes_value(argv[k]))
			k++;
	}
	return argc;
}

static bool wants_help(int argc, char **argv, int upto)
{
	int k;

	for (k = 1; k < upto && k < argc; k++)
		if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h"))
			return true;
	return false;
}

/* Apply -o and --timeout, resolve the server. */
static int apply_globals(struct cli *c, const struct cli_args *a)
{
	const char *o = cli_args_get(a, "output"), *t;
	char err[CLI_ERR_MAX];

	if (o && strcmp(o, "table") && strcmp(o, "json"))
		return cli_fail(c, CLI_EXIT_USAGE,
				"-o: '%s' is not an output format (table or "
				"json)",
				o);
	c->json = o && !strcmp(o, "json");
	t = cli_args_get(a, "timeout");
	c->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
	if (t &&
	    cli_parse_seconds("--timeout", t, &c->timeout_ms, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	c->timeout_given = t != NULL;
	c->ca_file = cli_args_get(a, "ca");
	c->ca_from = "--ca";
	if (!c->ca_file && getenv("CANOPY_CA") && getenv("CANOPY_CA")[0]) {
		c->ca_file = getenv("CANOPY_CA");
		c->ca_from = "CANOPY_CA";
	}
	c->trust_fpr = cli_args_get(a, "trust-fingerprint");
	if (cli_server_resolve(c, cli_args_get(a, "server"), NULL)) {
		c->usage = false; /* a bad address, not a bad command line */
		return -EINVAL;
	}
	return 0;
}

/* Parse the command's words (argv without object and verb) and run it. */
static int run_cmd(struct cli *c, const struct cli_cmd *k, int argc,
		   const char *const *argv)
{
	struct cli_args a;
	char err[CLI_ERR_MAX];
	int rc;

	rc = cli_args_parse(&a, k->opts, global_opts, argc, argv, err,
			    sizeof(err));
	if (rc)
		return cli_fail(c, CLI_EXIT_USAGE, "%s %s: %s", k->object,
				k->verb, err);
	if (cli_args_has(&a, "help")) {
		help_cmd(k);
		return 0;
	}
	if (a.npos < k->min_pos || a.npos > k->max_pos)
		return cli_fail(c, CLI_EXIT_USAGE,
				"%s %s: %s; usage: canopy %s %s %s", k->object,
				k->verb,
				a.npos < k->min_pos ? "missing argument" :
						      "too many arguments",
				k->object, k->verb, k->args);
	rc = apply_globals(c, &a);
	if (rc)
		return rc;
	return k->run(c, &a);
}

/* Find object and verb in argv and run the command. Returns the exit
 * status. */
static int dispatch(struct cli *c, int argc, char **argv)
{
	const char *words[CLI_POS_MAX + 2 * CLI_OPTS_MAX * CLI_OPT_VALUES_MAX];
	char line[sizeof(((struct cli *)0)->err) * 4];
	const struct cli_cmd *k;
	int ko, kv, i, n = 0, rc;
	size_t oi;

	ko = next_word(argc, argv, 1);
	if (ko == argc) {
		if (wants_help(argc, argv, argc)) {
			help_top();
			return 0;
		}
		return usage(
			"%s",
			"missing object (cluster, host, datastore, vm, task, event)");
	}
	for (oi = 0; oi < CN_ARRAY_SIZE(objects); oi++)
		if (!strcmp(objects[oi].name, argv[ko]))
			break;
	kv = next_word(argc, argv, ko + 1);
	/* `canopy login|logout|whoami`: short for `canopy session VERB`. */
	if (oi == CN_ARRAY_SIZE(objects) &&
	    (!strcmp(argv[ko], "login") || !strcmp(argv[ko], "logout") ||
	     !strcmp(argv[ko], "whoami"))) {
		for (oi = 0; strcmp(objects[oi].name, "session"); oi++)
			;
		kv = ko;
	}
	if (oi == CN_ARRAY_SIZE(objects))
		return usage(
			"unknown object '%s' (cluster, host, datastore, vm, "
			"task, event, user, role, permission, audit; or "
			"login)",
			argv[ko]);
	if (kv == argc && wants_help(argc, argv, argc)) {
		help_object((int)oi);
		return 0;
	}
	if (kv == argc)
		return usage(
			"%s: missing verb (canopy OBJECT --help lists them)",
			objects[oi].name);
	for (k = objects[oi].cmds; k->object; k++)
		if (!strcmp(k->verb, argv[kv]))
			break;
	if (!k->object)
		return usage("unknown verb '%s' (canopy OBJECT --help lists "
			     "them)",
			     argv[kv]);
	for (i = 1; i < argc; i++) {
		if (i == ko || i == kv)
			continue;
		if (n == (int)CN_ARRAY_SIZE(words))
			return usage("%s", "too many arguments");
		words[n++] = argv[i];
	}
	rc = run_cmd(c, k, n, words);
	if (!rc)
		return 0;
	/* The line may quote the server's text: no control characters. */
	cli_text_clean(line, sizeof(line), c->err[0] ? c->err : strerror(-rc),
		       sizeof(line) / 4);
	fprintf(stderr, "canopy: %s\n", line);
	if (c->usage && !strstr(c->err, "usage:"))
		fprintf(stderr, "usage: canopy %s %s%s%s (--help for more)\n",
			k->object, k->verb, k->args[0] ? " " : "", k->args);
	return c->exit_code ? c->exit_code : CLI_EXIT_FAIL;
}

int main(int argc, char **argv)
{
	struct cli c;
	int status;

	memset(&c, 0, sizeof(c));
	c.out = stdout;
	c.tty = isatty(STDOUT_FILENO);
	c.interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
	c.timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
	snprintf(c.server, sizeof(c.server), "%s", CLI_DEFAULT_SERVER);
	c.server_from = "the default";
	status = dispatch(&c, argc, argv);
	cli_close(&c);
	if (fflush(stdout) && !status) {
		fprintf(stderr, "canopy: cannot write the output: %s\n",
			strerror(errno));
		status = CLI_EXIT_FAIL;
	}
	return status;
}
