/* canopy-managerd: privileges, the built-in roles, and who may do what where. */
#include <errno.h>
#include <string.h>

#include "manager/auth.h"

static const struct {
	uint32_t bit;
	const char *name;
} privs[] = {
	{ AUTH_SYSTEM_READ, "system.read" },
	{ AUTH_VM_POWER, "vm.power" },
	{ AUTH_VM_CREATE, "vm.create" },
	{ AUTH_VM_DELETE, "vm.delete" },
	{ AUTH_VM_MIGRATE, "vm.migrate" },
	{ AUTH_VM_CONSOLE, "vm.console" },
	{ AUTH_HOST_MAINTENANCE, "host.maintenance" },
	{ AUTH_HOST_REMOVE, "host.remove" },
	{ AUTH_IMAGE_IMPORT, "image.import" },
	{ AUTH_TASK_CANCEL, "task.cancel" },
	{ AUTH_USER_MANAGE, "user.manage" },
	{ AUTH_AUDIT_READ, "audit.read" },
	{ AUTH_HOST_ADD, "host.add" },
	{ AUTH_VM_MIGRATE_RESOLVE, "vm.migrate.resolve" },
};

static const struct auth_role_def roles[] = {
	{ "Administrator", AUTH_PRIV_ALL, "every privilege" },
	{ "Operator",
	  AUTH_SYSTEM_READ | AUTH_VM_POWER | AUTH_VM_CONSOLE | AUTH_VM_MIGRATE |
		  AUTH_TASK_CANCEL,
	  "runs VMs: power, console, migrate, cancel tasks; sees everything" },
	{ "ReadOnly", AUTH_SYSTEM_READ, "sees everything, changes nothing" },
	{ "NoAccess", 0, "nothing; overrides a grant inherited from above" },
};

uint32_t auth_priv_parse(const char *name)
{
	size_t i;

	for (i = 0; name && i < CN_ARRAY_SIZE(privs); i++)
		if (strcmp(privs[i].name, name) == 0)
			return privs[i].bit;
	return 0;
}

const char *auth_priv_name(uint32_t bit)
{
	size_t i;

	for (i = 0; i < CN_ARRAY_SIZE(privs); i++)
		if (privs[i].bit == bit)
			return privs[i].name;
	return NULL;
}

int auth_priv_parse_list(const char *list, uint32_t *mask, const char **bad)
{
	char name[32];
	const char *p = list, *end;
	uint32_t bit;
	size_t len;

	*mask = 0;
	if (bad)
		*bad = NULL;
	while (p && *p) {
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		bit = 0;
		if (len > 0 && len < sizeof(name)) {
			memcpy(name, p, len);
			name[len] = '\0';
			bit = auth_priv_parse(name);
		}
		if (!bit) {
			if (bad)
				*bad = p;
			return -EINVAL;
		}
		*mask |= bit;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

const struct auth_role_def *auth_builtin_roles(size_t *count)
{
	*count = CN_ARRAY_SIZE(roles);
	return roles;
}

const struct auth_role_def *auth_builtin_role(const char *name)
{
	size_t i;

	for (i = 0; name && i < CN_ARRAY_SIZE(roles); i++)
		if (strcmp(roles[i].name, name) == 0)
			return &roles[i];
	return NULL;
}

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* The grant of `user` on exactly (kind, id), or NULL. */
static const struct auth_grant *grant_on(const struct auth_grant *g, size_t n,
					 const char *user,
					 enum auth_obj_kind kind,
					 const char *id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (g[i].kind == kind && same(g[i].user, user) &&
		    (kind == AUTH_OBJ_CLUSTER || same(g[i].id, id)))
			return &g[i];
	return NULL;
}

uint32_t auth_effective(const struct auth_grant *g, size_t n, const char *user,
			const struct auth_obj *obj)
{
	const struct auth_grant *hit = NULL;

	if (!user || !obj)
		return 0;
	if (obj->kind == AUTH_OBJ_VM)
		hit = grant_on(g, n, user, AUTH_OBJ_VM, obj->id);
	if (!hit && obj->kind == AUTH_OBJ_HOST)
		hit = grant_on(g, n, user, AUTH_OBJ_HOST, obj->id);
	if (!hit && obj->kind == AUTH_OBJ_VM && obj->host)
		hit = grant_on(g, n, user, AUTH_OBJ_HOST, obj->host);
	if (!hit)
		hit = grant_on(g, n, user, AUTH_OBJ_CLUSTER, NULL);
	return hit ? hit->privs : 0;
}
