/* canopy CLI: `role list|create|delete`, `permission grant|revoke|list`, `audit list|verify`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "proto/canopy_auth.pb-c.h"

#define SVC "/canopy.v1."
#define M_LIST_ROLES SVC "RoleService/ListRoles"
#define M_CREATE_ROLE SVC "RoleService/CreateRole"
#define M_DELETE_ROLE SVC "RoleService/DeleteRole"
#define M_GRANT SVC "RoleService/Grant"
#define M_REVOKE SVC "RoleService/Revoke"
#define M_LIST_PERMS SVC "RoleService/ListPermissions"
#define M_LIST_AUDIT SVC "AuditService/ListAudit"
#define M_VERIFY_AUDIT SVC "AuditService/VerifyAudit"

static int role_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__Role *r = (const void *)m;
	char privs[1024];
	const char *row[] = { r->name, r->builtin ? "built-in" : "custom",
			      privs };
	size_t i, o = 0;

	(void)now;
	privs[0] = '\0';
	for (i = 0; i < r->n_privileges && o < sizeof(privs); i++)
		o += (size_t)snprintf(privs + o, sizeof(privs) - o, "%s%s",
				      i ? "," : "", r->privileges[i]);
	if (!r->n_privileges)
		snprintf(privs, sizeof(privs), "-");
	return cli_table_add(t, row);
}

static int role_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "NAME", "KIND", "PRIVILEGES" };
	static const struct cli_list l = {
		.method = M_LIST_ROLES,
		.resp_desc = &canopy__v1__list_roles_response__descriptor,
		.field = "roles",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = role_row,
	};
	Canopy__V1__ListRolesRequest req = CANOPY__V1__LIST_ROLES_REQUEST__INIT;

	(void)a;
	return cli_list_run(c, &l, &req.base);
}

static int role_create(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__CreateRoleRequest req =
		CANOPY__V1__CREATE_ROLE_REQUEST__INIT;
	Canopy__V1__Role role = CANOPY__V1__ROLE__INIT;
	const char *list = cli_args_get(a, "privileges");
	char *copy, *save = NULL, *p, *names[64], line[160];
	size_t n = 0;
	int rc;

	if (!list || !list[0])
		return cli_fail(c, CLI_EXIT_USAGE,
				"--privileges a,b,... is required (see "
				"'canopy role list')");
	copy = strdup(list);
	if (!copy)
		return cli_fail(c, CLI_EXIT_FAIL, "out of memory");
	for (p = strtok_r(copy, ",", &save); p && n < CN_ARRAY_SIZE(names);
	     p = strtok_r(NULL, ",", &save))
		names[n++] = p;
	role.name = (char *)a->pos[0];
	role.description = (char *)(cli_args_get(a, "description") ?: "");
	role.n_privileges = n;
	role.privileges = names;
	req.role = &role;
	snprintf(line, sizeof(line), "role %s created", role.name);
	rc = cli_call_say(c, M_CREATE_ROLE, &req.base,
			  &canopy__v1__role__descriptor, line);
	free(copy);
	return rc;
}

static int role_delete(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__DeleteRoleRequest req =
		CANOPY__V1__DELETE_ROLE_REQUEST__INIT;
	char line[160];

	req.name = (char *)a->pos[0];
	snprintf(line, sizeof(line), "role %s deleted", req.name);
	return cli_call_say(c, M_DELETE_ROLE, &req.base,
			    &canopy__v1__role__descriptor, line);
}

static const struct cli_optdef role_opts[] = {
	{ .name = "privileges", .has_arg = true },
	{ .name = "description", .has_arg = true },
	{ 0 },
};

const struct cli_cmd cli_role_cmds[] = {
	{ .object = "role",
	  .verb = "list",
	  .args = "",
	  .summary = "list roles and their privileges",
	  .run = role_list },
	{ .object = "role",
	  .verb = "create",
	  .args = "NAME --privileges P1,P2,... [--description D]",
	  .summary = "create a custom role",
	  .opts = role_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = role_create },
	CLI_CMD_1("role", "delete", "NAME", "delete a custom role",
		  role_delete),
	{ 0 },
};

/* ---- permissions -------------------------------------------------------------- */

static int perm_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__Permission *p = (const void *)m;
	const char *row[] = { p->object, p->user, p->role };

	(void)now;
	return cli_table_add(t, row);
}

static int perm_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "OBJECT", "USER", "ROLE" };
	static const struct cli_list l = {
		.method = M_LIST_PERMS,
		.resp_desc = &canopy__v1__list_permissions_response__descriptor,
		.field = "permissions",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = perm_row,
	};
	Canopy__V1__ListPermissionsRequest req =
		CANOPY__V1__LIST_PERMISSIONS_REQUEST__INIT;

	req.object = (char *)(cli_args_get(a, "object") ?: "");
	req.user = (char *)(cli_args_get(a, "user") ?: "");
	return cli_list_run(c, &l, &req.base);
}

static int perm_grant(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__GrantRequest req = CANOPY__V1__GRANT_REQUEST__INIT;
	Canopy__V1__Permission p = CANOPY__V1__PERMISSION__INIT;
	char line[400];

	p.object = (char *)a->pos[0];
	p.user = (char *)a->pos[1];
	p.role = (char *)a->pos[2];
	req.permission = &p;
	snprintf(line, sizeof(line), "%s has role %s on %s", p.user, p.role,
		 p.object);
	return cli_call_say(c, M_GRANT, &req.base,
			    &canopy__v1__permission__descriptor, line);
}

static int perm_revoke(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__RevokeRequest req = CANOPY__V1__REVOKE_REQUEST__INIT;
	char line[400];

	req.object = (char *)a->pos[0];
	req.user = (char *)a->pos[1];
	snprintf(line, sizeof(line), "%s has no permission on %s any more",
		 req.user, req.object);
	return cli_call_say(c, M_REVOKE, &req.base,
			    &canopy__v1__permission__descriptor, line);
}

static const struct cli_optdef perm_list_opts[] = {
	{ .name = "object", .has_arg = true },
	{ .name = "user", .has_arg = true },
	{ 0 },
};

const struct cli_cmd cli_permission_cmds[] = {
	{ .object = "permission",
	  .verb = "grant",
	  .args = "OBJECT USER ROLE",
	  .summary = "grant ROLE to USER on OBJECT (cluster, host/ID, "
		     "vm/NAME; inherited downwards, the nearest grant wins)",
	  .min_pos = 3,
	  .max_pos = 3,
	  .run = perm_grant },
	{ .object = "permission",
	  .verb = "revoke",
	  .args = "OBJECT USER",
	  .summary = "remove USER's grant on OBJECT",
	  .min_pos = 2,
	  .max_pos = 2,
	  .run = perm_revoke },
	{ .object = "permission",
	  .verb = "list",
	  .args = "[--object O] [--user U]",
	  .summary = "list grants",
	  .opts = perm_list_opts,
	  .run = perm_list },
	{ 0 },
};

/* ---- audit ------------------------------------------------------------------------ */

static int audit_row(struct cli_table *t, const ProtobufCMessage *m,
		     uint64_t now)
{
	const Canopy__V1__AuditRecord *r = (const void *)m;
	char when[32], seq[24];
	struct tm tm;
	time_t s = (time_t)(r->time_ms / 1000);
	const char *row[] = { seq,	 when,	    r->user,   r->source,
			      r->method, r->object, r->result, r->message };

	(void)now;
	snprintf(seq, sizeof(seq), "%" PRIu64, r->seq);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&s, &tm));
	return cli_table_add(t, row);
}

/* "2026-11-27T10:00:00" (local time), or an age "90s", "30m", "2h",
 * "7d", into unix ms. 0 or -EINVAL. */
static int since_parse(const char *s, int64_t *ms)
{
	struct tm tm = { 0 };
	char *end;
	long long v;

	if (strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) &&
	    *strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == '\0') {
		tm.tm_isdst = -1;
		*ms = (int64_t)mktime(&tm) * 1000;
		return 0;
	}
	v = strtoll(s, &end, 10);
	if (end == s || v < 0 || end[0] == '\0' || end[1] != '\0')
		return -EINVAL;
	v *= end[0] == 's' ? 1 :
	     end[0] == 'm' ? 60 :
	     end[0] == 'h' ? 3600 :
	     end[0] == 'd' ? 86400 :
			     0;
	if (!v && end[0] != 's')
		return -EINVAL;
	*ms = (int64_t)cli_now_ms() - v * 1000;
	return 0;
}

static int audit_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "SEQ",    "TIME",   "USER",
					   "SOURCE", "METHOD", "OBJECT",
					   "RESULT", "MESSAGE" };
	static const struct cli_list l = {
		.method = M_LIST_AUDIT,
		.resp_desc = &canopy__v1__list_audit_response__descriptor,
		.field = "records",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = audit_row,
	};
	Canopy__V1__ListAuditRequest req = CANOPY__V1__LIST_AUDIT_REQUEST__INIT;
	const char *since = cli_args_get(a, "since");

	req.user = (char *)(cli_args_get(a, "user") ?: "");
	if (since && since_parse(since, &req.since_ms))
		return cli_fail(c, CLI_EXIT_USAGE,
				"--since takes YYYY-MM-DDTHH:MM:SS or an age "
				"like 30m, 2h, 7d");
	return cli_list_run(c, &l, &req.base);
}

static int audit_verify(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__VerifyAuditRequest req =
		CANOPY__V1__VERIFY_AUDIT_REQUEST__INIT;
	Canopy__V1__VerifyAuditResponse *v;
	int rc;

	(void)a;
	rc = cli_call(c, M_VERIFY_AUDIT, &req.base,
		      &canopy__v1__verify_audit_response__descriptor,
		      (ProtobufCMessage **)&v);
	if (rc)
		return rc;
	if (c->json)
		cli_print_json(c, &v->base);
	else
		fprintf(c->out, "%s: %s\n", v->file, v->message);
	rc = v->ok ? 0 :
		     cli_fail(c, CLI_EXIT_FAIL,
			      "the audit file %s fails verification", v->file);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return rc;
}

static const struct cli_optdef audit_opts[] = {
	{ .name = "user", .has_arg = true },
	{ .name = "since", .has_arg = true },
	{ 0 },
};

const struct cli_cmd cli_audit_cmds[] = {
	{ .object = "audit",
	  .verb = "list",
	  .args = "[--user U] [--since T]",
	  .summary = "audited calls: every change and every denied call",
	  .opts = audit_opts,
	  .run = audit_list },
	{ .object = "audit",
	  .verb = "verify",
	  .args = "",
	  .summary = "check the manager's audit file against its hash chain",
	  .run = audit_verify },
	{ 0 },
};
