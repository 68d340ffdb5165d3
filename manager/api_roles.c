/* canopy-managerd: roles and permissions calls (list, create, delete, grant, revoke). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/api_internal.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* A built-in role as a message; names point into static tables. */
static void builtin_msg(const struct auth_role_def *d, Canopy__V1__Role *r,
			const char **names, size_t max)
{
	uint32_t bit;
	size_t n = 0;

	for (bit = 1; bit & AUTH_PRIV_ALL && n < max; bit <<= 1)
		if (d->privs & bit)
			names[n++] = auth_priv_name(bit);
	r->name = (char *)d->name;
	r->description = (char *)d->about;
	r->builtin = true;
	r->n_privileges = n;
	r->privileges = (char **)names;
}

void api_list_roles(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	Canopy__V1__ListRolesResponse resp =
		CANOPY__V1__LIST_ROLES_RESPONSE__INIT;
	struct manager *m = arg;
	size_t nb, i, n;
	const struct auth_role_def *b = auth_builtin_roles(&nb);
	Canopy__V1__Role *roles, **ptrs;
	const char(*names)[32];

	(void)r;
	n = nb + m->auth->n_roles;
	roles = calloc(n, sizeof(*roles));
	ptrs = calloc(n, sizeof(*ptrs));
	names = calloc(nb, sizeof(*names));
	if (!roles || !ptrs || !names) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < nb; i++) {
		canopy__v1__role__init(&roles[i]);
		builtin_msg(&b[i], &roles[i], (const char **)names[i], 32);
		ptrs[i] = &roles[i];
	}
	for (i = 0; i < m->auth->n_roles; i++)
		ptrs[nb + i] = m->auth->roles[i];
	resp.n_roles = n;
	resp.roles = ptrs;
	api_reply(c, &resp.base);
out:
	free(roles);
	free(ptrs);
	free((void *)names);
}

static bool role_name_ok(const char *s)
{
	return mgr_name_valid(MGR_NAME_HOST, s); /* [A-Za-z0-9._-]{1,64} */
}

void api_create_role(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__CreateRoleRequest *req = (const void *)r;
	struct manager *m = arg;
	Canopy__V1__Role role;
	uint32_t privs;
	size_t i;
	int rc;

	if (!req->role || !role_name_ok(req->role->name)) {
		api_fail(
			c, CN_INVALID_ARGUMENT,
			"a role name has 1 to 64 characters of A-Z a-z 0-9 . _ -");
		return;
	}
	if (mgr_auth_role_privs(m, req->role->name, &privs) == 0) {
		api_fail(c, CN_ALREADY_EXISTS, "role %s exists",
			 req->role->name);
		return;
	}
	if (req->role->n_privileges == 0) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "a role needs at least one privilege (for none, "
			 "grant NoAccess)");
		return;
	}
	for (i = 0; i < req->role->n_privileges; i++)
		if (!auth_priv_parse(req->role->privileges[i])) {
			api_fail(
				c, CN_INVALID_ARGUMENT,
				"unknown privilege '%.64s'; see 'canopy role "
				"list' for the privileges of the built-in roles",
				req->role->privileges[i]);
			return;
		}
	role = *req->role;
	role.builtin = false;
	rc = mgr_auth_role_save(m, &role, false);
	if (rc)
		mgr_fail_store(m, c, rc, "storing the role");
	else
		api_reply(c, &role.base);
}

/* Whether any grant names role. */
static bool role_used(struct manager *m, const char *role)
{
	size_t i;

	for (i = 0; i < m->auth->n_perms; i++)
		if (strcmp(m->auth->perms[i]->role, role) == 0)
			return true;
	return false;
}

void api_delete_role(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__DeleteRoleRequest *req = (const void *)r;
	Canopy__V1__Role role = CANOPY__V1__ROLE__INIT;
	struct manager *m = arg;
	uint32_t privs;
	int rc;

	if (auth_builtin_role(req->name)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "%s is a built-in role and cannot be deleted",
			 req->name);
		return;
	}
	if (!req->name || mgr_auth_role_privs(m, req->name, &privs)) {
		api_fail(c, CN_NOT_FOUND, "role %.64s does not exist",
			 req->name ? req->name : "");
		return;
	}
	if (role_used(m, req->name)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "role %s is granted; revoke its permissions first "
			 "('canopy permission list')",
			 req->name);
		return;
	}
	role.name = req->name;
	rc = mgr_auth_role_save(m, &role, true);
	if (rc)
		mgr_fail_store(m, c, rc, "deleting the role");
	else
		api_reply(c, &role.base);
}

void api_grant(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__GrantRequest *req = (const void *)r;
	const Canopy__V1__Permission *p = req->permission;
	struct manager *m = arg;
	enum auth_obj_kind kind;
	const char *id;
	uint32_t privs;
	int rc;

	if (!p || mgr_auth_object_parse(p->object, &kind, &id)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "the object is 'cluster', 'host/ID' or 'vm/NAME'");
		return;
	}
	if (!mgr_auth_user(m, p->user)) {
		api_fail(c, CN_NOT_FOUND,
			 "user %.64s does not exist; add it first",
			 p->user ? p->user : "");
		return;
	}
	if (!p->role || mgr_auth_role_privs(m, p->role, &privs)) {
		api_fail(c, CN_NOT_FOUND,
			 "role %.64s does not exist; see 'canopy role list'",
			 p->role ? p->role : "");
		return;
	}
	if (kind == AUTH_OBJ_CLUSTER &&
	    !mgr_auth_admin_left(m, NULL, p->user, p->role)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "this would leave nobody with user.manage on the "
			 "cluster; grant Administrator to another user first");
		return;
	}
	rc = mgr_auth_perm_save(m, p, false);
	if (rc)
		mgr_fail_store(m, c, rc, "storing the permission");
	else
		api_reply(c, &p->base);
}

void api_revoke(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__RevokeRequest *req = (const void *)r;
	Canopy__V1__Permission gone = CANOPY__V1__PERMISSION__INIT;
	char object[160], user[AUTH_USER_MAX + 1], role[80];
	const Canopy__V1__Permission *p = NULL;
	struct manager *m = arg;
	size_t i;
	int rc;

	for (i = 0; i < m->auth->n_perms && !p; i++)
		if (req->object && req->user &&
		    strcmp(m->auth->perms[i]->object, req->object) == 0 &&
		    strcmp(m->auth->perms[i]->user, req->user) == 0)
			p = m->auth->perms[i];
	if (!p) {
		api_fail(c, CN_NOT_FOUND,
			 "user %.64s has no permission on %.128s",
			 req->user ? req->user : "",
			 req->object ? req->object : "");
		return;
	}
	if (strcmp(p->object, "cluster") == 0 &&
	    !mgr_auth_admin_left(m, NULL, p->user, NULL)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "this would leave nobody with user.manage on the "
			 "cluster; grant Administrator to another user first");
		return;
	}
	/* The cached entry goes away with the delete: keep a copy. */
	snprintf(object, sizeof(object), "%s", p->object);
	snprintf(user, sizeof(user), "%s", p->user);
	snprintf(role, sizeof(role), "%s", p->role);
	gone.object = object;
	gone.user = user;
	gone.role = role;
	rc = mgr_auth_perm_save(m, &gone, true);
	if (rc)
		mgr_fail_store(m, c, rc, "deleting the permission");
	else
		api_reply(c, &gone.base);
}

void api_list_permissions(void *arg, struct api_call *c,
			  const ProtobufCMessage *r)
{
	const Canopy__V1__ListPermissionsRequest *req = (const void *)r;
	Canopy__V1__ListPermissionsResponse resp =
		CANOPY__V1__LIST_PERMISSIONS_RESPONSE__INIT;
	struct manager *m = arg;
	Canopy__V1__Permission **ptrs;
	size_t i, n = 0;

	ptrs = calloc(m->auth->n_perms ? m->auth->n_perms : 1, sizeof(*ptrs));
	if (!ptrs) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (i = 0; i < m->auth->n_perms; i++) {
		Canopy__V1__Permission *p = m->auth->perms[i];

		if ((req->object && req->object[0] &&
		     strcmp(p->object, req->object) != 0) ||
		    (req->user && req->user[0] && strcmp(p->user, req->user)))
			continue;
		ptrs[n++] = p;
	}
	resp.n_permissions = n;
	resp.permissions = ptrs;
	api_reply(c, &resp.base);
	free(ptrs);
}
