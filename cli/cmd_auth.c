/* canopy CLI: `session login|logout|whoami`, `user`, `role`, `permission`, `audit`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/token.h"
#include "proto/canopy_auth.pb-c.h"

#define SVC "/canopy.v1."
#define M_LOGIN SVC "AuthService/Login"
#define M_WHOAMI SVC "AuthService/WhoAmI"
#define M_ADD_USER SVC "UserService/AddUser"
#define M_LIST_USERS SVC "UserService/ListUsers"
#define M_SET_PASSWORD SVC "UserService/SetPassword"
#define M_DELETE_USER SVC "UserService/DeleteUser"

/* A password from --FLAG FILE or the terminal/stdin; records the error. */
static int password(struct cli *c, const struct cli_args *a, const char *flag,
		    const char *prompt, char *pw)
{
	int rc = cli_password_read(cli_args_get(a, flag), prompt, pw,
				   CLI_PASSWORD_MAX + 2);

	if (rc == -EINVAL)
		return cli_fail(c, CLI_EXIT_USAGE,
				"no password given, or one over %d bytes",
				CLI_PASSWORD_MAX);
	if (rc)
		return cli_fail(c, CLI_EXIT_FAIL,
				"cannot read the password: %s", strerror(-rc));
	return 0;
}

/* ---- session -------------------------------------------------------------- */

static int session_login(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__LoginRequest req = CANOPY__V1__LOGIN_REQUEST__INIT;
	Canopy__V1__LoginResponse *resp;
	const char *user = cli_args_get(a, "user");
	char pw[CLI_PASSWORD_MAX + 2], until[64];
	time_t t;
	int rc;

	req.user = (char *)(user ? user : "admin");
	rc = password(c, a, "password-file", "Password: ", pw);
	if (rc)
		return rc;
	req.password = pw;
	rc = cli_call(c, M_LOGIN, &req.base,
		      &canopy__v1__login_response__descriptor,
		      (ProtobufCMessage **)&resp);
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc)
		return rc;
	rc = cli_token_save(c->addrs[c->cur], resp->token);
	if (rc) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return cli_fail(c, CLI_EXIT_FAIL, "cannot store the token: %s",
				strerror(-rc));
	}
	t = (time_t)resp->expires_unix;
	strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S", localtime(&t));
	if (c->json) {
		struct cli_json j;

		cli_json_init(&j, c->out);
		cli_json_begin_object(&j);
		cli_json_key(&j, "user");
		cli_json_string(&j, resp->user);
		cli_json_key(&j, "expires_unix");
		cli_json_int(&j, resp->expires_unix);
		cli_json_end_object(&j);
		cli_json_finish(&j);
	} else
		fprintf(c->out, "logged in as %s until %s\n", resp->user,
			until);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static int session_logout(struct cli *c, const struct cli_args *a)
{
	size_t i;
	int gone = 0;

	(void)a;
	for (i = 0; i < c->naddrs; i++)
		gone += cli_token_remove(c->addrs[i]) == 0;
	fprintf(c->out, gone ? "logged out\n" : "not logged in\n");
	return 0;
}

static void whoami_print(struct cli *c, const ProtobufCMessage *m)
{
	const Canopy__V1__WhoamiResponse *w = (const void *)m;
	char until[64], privs[512];
	const char *keys[] = { "User", "Token expires", "Cluster privileges" };
	const char *vals[] = { w->user, until, privs };
	time_t t = (time_t)w->expires_unix;
	size_t i, o = 0;

	strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S", localtime(&t));
	privs[0] = '\0';
	for (i = 0; i < w->n_cluster_privileges && o < sizeof(privs); i++)
		o += (size_t)snprintf(privs + o, sizeof(privs) - o, "%s%s",
				      i ? ", " : "", w->cluster_privileges[i]);
	if (!w->n_cluster_privileges)
		snprintf(privs, sizeof(privs), "-");
	cli_kv_print(c->out, CN_ARRAY_SIZE(keys), keys, vals);
}

static int session_whoami(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__WhoamiRequest req = CANOPY__V1__WHOAMI_REQUEST__INIT;

	(void)a;
	return cli_show_run(c, M_WHOAMI, &req.base,
			    &canopy__v1__whoami_response__descriptor,
			    whoami_print);
}

static const struct cli_optdef login_opts[] = {
	{ .name = "user", .shortc = 'u', .has_arg = true },
	{ .name = "password-file", .has_arg = true },
	{ 0 },
};

const struct cli_cmd cli_session_cmds[] = {
	{ .object = "session",
	  .verb = "login",
	  .args = "[--user U] [--password-file F]",
	  .summary = "log in and keep the token for this server",
	  .help = "  --user U            the user (default admin)\n"
		  "  --password-file F   read the password from F's first "
		  "line\n"
		  "                      (else asked on the terminal, or "
		  "read from stdin)\n",
	  .opts = login_opts,
	  .run = session_login },
	{ .object = "session",
	  .verb = "logout",
	  .args = "",
	  .summary = "forget the token kept for this server",
	  .run = session_logout },
	{ .object = "session",
	  .verb = "whoami",
	  .args = "",
	  .summary = "who the token is for, and its privileges",
	  .run = session_whoami },
	{ 0 },
};

/* ---- users ------------------------------------------------------------------ */

static int user_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__UserInfo *u = (const void *)m;
	char created[32];
	const char *row[] = { u->name, u->locked ? "locked" : "active", created,
			      u->description };

	cli_fmt_age(created, sizeof(created), (uint64_t)u->created_ms, now);
	return cli_table_add(t, row);
}

static int user_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "NAME", "STATE", "CREATED",
					   "DESCRIPTION" };
	static const struct cli_list l = {
		.method = M_LIST_USERS,
		.resp_desc = &canopy__v1__list_users_response__descriptor,
		.field = "users",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = user_row,
	};
	Canopy__V1__ListUsersRequest req = CANOPY__V1__LIST_USERS_REQUEST__INIT;

	(void)a;
	return cli_list_run(c, &l, &req.base);
}

static int user_add(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__AddUserRequest req = CANOPY__V1__ADD_USER_REQUEST__INIT;
	char pw[CLI_PASSWORD_MAX + 2], line[128];
	int rc;

	req.name = (char *)a->pos[0];
	req.description = (char *)(cli_args_get(a, "description") ?: "");
	rc = password(c, a, "password-file", "New user's password: ", pw);
	if (rc)
		return rc;
	req.password = pw;
	snprintf(line, sizeof(line), "user %s added", req.name);
	rc = cli_call_say(c, M_ADD_USER, &req.base,
			  &canopy__v1__user_response__descriptor, line);
	OPENSSL_cleanse(pw, sizeof(pw));
	return rc;
}

static int user_passwd(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__SetPasswordRequest req =
		CANOPY__V1__SET_PASSWORD_REQUEST__INIT;
	char pw[CLI_PASSWORD_MAX + 2], old[CLI_PASSWORD_MAX + 2], line[128];
	int rc;

	req.name = (char *)a->pos[0];
	if (cli_args_get(a, "old-password-file")) {
		rc = password(c, a, "old-password-file", "", old);
		if (rc)
			return rc;
		req.old_password = old;
	}
	rc = password(c, a, "password-file", "New password: ", pw);
	if (rc)
		return rc;
	req.password = pw;
	snprintf(line, sizeof(line),
		 "password of %s changed; its older tokens no longer work",
		 req.name);
	rc = cli_call_say(c, M_SET_PASSWORD, &req.base,
			  &canopy__v1__user_response__descriptor, line);
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(old, sizeof(old));
	return rc;
}

static int user_delete(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__DeleteUserRequest req =
		CANOPY__V1__DELETE_USER_REQUEST__INIT;
	char line[128];

	req.name = (char *)a->pos[0];
	snprintf(line, sizeof(line), "user %s deleted, with its permissions",
		 req.name);
	return cli_call_say(c, M_DELETE_USER, &req.base,
			    &canopy__v1__user_response__descriptor, line);
}

static const struct cli_optdef user_add_opts[] = {
	{ .name = "password-file", .has_arg = true },
	{ .name = "description", .has_arg = true },
	{ 0 },
};

static const struct cli_optdef passwd_opts[] = {
	{ .name = "password-file", .has_arg = true },
	{ .name = "old-password-file", .has_arg = true },
	{ 0 },
};

const struct cli_cmd cli_user_cmds[] = {
	{ .object = "user",
	  .verb = "add",
	  .args = "NAME [--password-file F] [--description D]",
	  .summary = "add a user (it can do nothing until granted a role)",
	  .opts = user_add_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = user_add },
	{ .object = "user",
	  .verb = "list",
	  .args = "",
	  .summary = "list users",
	  .run = user_list },
	{ .object = "user",
	  .verb = "passwd",
	  .args = "NAME [--password-file F] [--old-password-file F]",
	  .summary = "set a password (your own needs the old one); ends the "
		     "user's tokens",
	  .opts = passwd_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = user_passwd },
	CLI_CMD_1("user", "delete", "NAME", "delete a user and its permissions",
		  user_delete),
	{ 0 },
};
