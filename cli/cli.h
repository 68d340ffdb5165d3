/*
 * The canopy CLI's context and command table. One struct cli per process
 * (main.c fills it from the global options, the environment and the config
 * file), passed to every command. A command returns 0 or a negative errno;
 * on failure it has recorded, through cli_fail() or cli_call(), the one
 * line main prints on stderr and the exit status.
 */
#ifndef CANOPY_CLI_CLI_H
#define CANOPY_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "cli/args.h"
#include "cli/out.h"
#include "cli/rpc.h"
#include "lib/compiler.h"
#include "proto/canopy_api.pb-c.h"

/* Server used when neither --server, CANOPY_SERVER nor the config say. */
#define CLI_DEFAULT_SERVER "127.0.0.1:7443"
/* Deadline of a unary call unless --timeout says otherwise. */
#define CLI_DEFAULT_TIMEOUT_MS 30000
/* Longest server address list as given. */
#define CLI_SERVER_MAX (CLI_SERVERS_MAX * CLI_ADDR_MAX)
/* Exit statuses of our own (the rest come from lib/err.h cn_code_exit). */
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
/* Most pages a list command follows (a server looping on its page token
 * cannot keep the CLI forever). */
#define CLI_PAGES_MAX 10000

struct cli {
	char server[CLI_SERVER_MAX]; /* the address list as given */
	const char *server_from; /* where server came from, for messages */
	char addrs[CLI_SERVERS_MAX][CLI_ADDR_MAX]; /* the list, parsed */
	size_t naddrs;
	size_t cur; /* the address that answered last */
	bool picked; /* a call succeeded on addrs[cur] */
	char config_path[512]; /* the config file looked at */
	bool json; /* -o json */
	unsigned timeout_ms; /* unary deadline */
	bool timeout_given; /* --timeout was given (bounds streams too) */
	bool tty; /* stdout is a terminal */
	FILE *out; /* stdout */
	struct cli_rpc *rpcs[CLI_SERVERS_MAX]; /* opened on first use */
	int exit_code; /* set with err by a failing command */
	bool usage; /* the error is a usage error: print the usage line */
	const char *ca_file; /* --ca or CANOPY_CA: the cluster CA to trust */
	const char *ca_from; /* "--ca" or "CANOPY_CA", for messages */
	const char *trust_fpr; /* --trust-fingerprint: pin an unknown CA */
	bool interactive; /* stdin and stderr are terminals: may ask */
	char err[CLI_RPC_MSG_MAX + CLI_SERVER_MAX + 256];
};

/* A command: `canopy OBJECT VERB ARGS`. */
struct cli_cmd {
	const char *object, *verb;
	const char *args; /* usage after the verb: "NAME [--hard]" */
	const char *summary; /* one line */
	const char *help; /* option lines for --help, or NULL */
	const struct cli_optdef *opts; /* NULL-name-terminated, or NULL */
	unsigned min_pos, max_pos; /* positional arguments after the verb */
	int (*run)(struct cli *c, const struct cli_args *a);
};

/* A command taking exactly one positional argument and no options. */
#define CLI_CMD_1(obj, v, arg, sum, fn)                                \
	{                                                              \
		.object = obj, .verb = v, .args = arg, .summary = sum, \
		.min_pos = 1, .max_pos = 1, .run = fn                  \
	}

/* An object of the command line and its verbs. */
struct cli_object {
	const char *name;
	const char *summary;
	const struct cli_cmd *cmds; /* ends with a NULL object */
};

/* Write a bash completion script for these objects and global options
 * (completion.c). */
void cli_completion_bash(FILE *f, const struct cli_object *objs, size_t n,
			 const struct cli_optdef *global);

/* The command tables of each object, each ending with a NULL object. */
extern const struct cli_cmd cli_cluster_cmds[];
extern const struct cli_cmd cli_host_cmds[];
extern const struct cli_cmd cli_datastore_cmds[];
extern const struct cli_cmd cli_vm_cmds[];
extern const struct cli_cmd cli_task_cmds[];
extern const struct cli_cmd cli_event_cmds[];
extern const struct cli_cmd cli_image_cmds[];
extern const struct cli_cmd cli_session_cmds[];
extern const struct cli_cmd cli_user_cmds[];
extern const struct cli_cmd cli_role_cmds[];
extern const struct cli_cmd cli_permission_cmds[];
extern const struct cli_cmd cli_audit_cmds[];

/* Record the error line (without "canopy: ") and exit status; returns
 * -EINVAL for CLI_EXIT_USAGE, else -EIO, for the command to return. */
int cli_fail(struct cli *c, int exit_code, const char *fmt, ...)
	CN_PRINTF(3, 4);

/* Record a failed call's status as the error: "cannot reach ..." when the
 * server could not be reached, the server's message otherwise; exit status
 * from lib/err.h. Returns a negative errno. */
int cli_fail_status(struct cli *c, const struct cli_status *st);

/* A unary call with the CLI's deadline; opens the channel on first use.
 * With several servers, one that is unreachable or answers UNAVAILABLE (a
 * standby manager) is followed by the next; the first that answers
 * otherwise decides. 0 with *resp, or a negative errno with the error
 * recorded. */
CN_MUST_CHECK int cli_call(struct cli *c, const char *method,
			   const ProtobufCMessage *req,
			   const ProtobufCMessageDescriptor *resp_desc,
			   ProtobufCMessage **resp);
/* A call whose answer is printed whole with -o json, else as `line` (one
 * sentence saying what was done). 0 or a negative errno (recorded). */
CN_MUST_CHECK int cli_call_say(struct cli *c, const char *method,
			       const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *resp_desc,
			       const char *line);
/* Start a server stream: no deadline unless --timeout was given. With
 * several servers, the stream goes to the one that answered last (found
 * with a GetCluster call if none has yet). */
CN_MUST_CHECK int cli_stream(struct cli *c, const char *method,
			     const ProtobufCMessage *req,
			     struct cli_stream **out);

/* Every page of a paged list call (list.c): req must have a string field
 * "page_token", the response a field "next_page_token" (a call without
 * them gives one page). The pages are returned in *pages (n in *npages);
 * free with cli_pages_free. 0 or a negative errno with the error
 * recorded. */
CN_MUST_CHECK int cli_list_pages(struct cli *c, const char *method,
				 ProtobufCMessage *req,
				 const ProtobufCMessageDescriptor *resp_desc,
				 ProtobufCMessage ***pages, size_t *npages);
void cli_pages_free(ProtobufCMessage **pages, size_t n);

/* A list command's output (list.c): the items of the repeated message
 * field `field` of every page, as one JSON array with -o json, else as a
 * table with these headers and one row an item. */
struct cli_list {
	const char *method; /* "/canopy.v1.HostService/ListHosts" */
	const ProtobufCMessageDescriptor *resp_desc; /* a page */
	const char *field; /* "hosts" */
	size_t ncols;
	const char *const *hdr; /* ncols static headers */
	/* Add item's row to t (now: unix ms, for ages). 0 or -ENOMEM. */
	int (*row)(struct cli_table *t, const ProtobufCMessage *item,
		   uint64_t now);
	bool reverse; /* print the items last first (newest-first lists) */
};

/* Print the items of n pages as l says. 0, or -EIO with "out of memory"
 * recorded. */
CN_MUST_CHECK int cli_list_print(struct cli *c, const struct cli_list *l,
				 ProtobufCMessage *const *pages, size_t n);
/* Fetch every page of l->method for req (cli_list_pages) and print them
 * (cli_list_print). 0 or a negative errno with the error recorded. */
CN_MUST_CHECK int cli_list_run(struct cli *c, const struct cli_list *l,
			       ProtobufCMessage *req);
/* A show command: call method with req and print the answer (a
 * resp_desc message) as JSON with -o json, else with print. 0 or a
 * negative errno with the error recorded. */
CN_MUST_CHECK int
cli_show_run(struct cli *c, const char *method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *resp_desc,
	     void (*print)(struct cli *c, const ProtobufCMessage *m));

/* Wall-clock time in unix milliseconds. */
uint64_t cli_now_ms(void);
/* Lower-case state names for tables ("running", "-" when unspecified). */
void cli_enum_text(char *buf, size_t size, const ProtobufCEnumDescriptor *d,
		   int v, const char *prefix);

/* Print one message as JSON (then a newline) on c->out. */
void cli_print_json(struct cli *c, const ProtobufCMessage *m);

/* After a call that returned a task: with no_wait print its id (or the
 * task as JSON) and return; else follow it to its end (cli_task_wait). */
CN_MUST_CHECK int cli_task_after(struct cli *c, const Canopy__V1__Task *t,
				 bool no_wait);
/* Follow task id with WaitTask until it ends, printing progress (a bar on
 * a terminal, "task ID: PHASE N%" lines otherwise, nothing with -o json),
 * then the outcome. 0 when it succeeded; a failed or cancelled task is an
 * error with exit status 1 and the task's error as the line. */
CN_MUST_CHECK int cli_task_wait(struct cli *c, const char *id);

/* Close every channel. */
void cli_close(struct cli *c);

/* Resolve the servers: --server (flag, may be NULL) over CANOPY_SERVER over
 * the config file (config_path, or $XDG_CONFIG_HOME/canopy/config, or
 * ~/.config/canopy/config) over the default. 0 or -EINVAL with the error
 * recorded (exit 2): a bad address or a bad config file. */
CN_MUST_CHECK int cli_server_resolve(struct cli *c, const char *flag,
				     const char *config_path);

#endif
