/* canopy-managerd: the leader's users, roles and grants, loaded from etcd and kept in step. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/pb.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

static void free_list(void ***list, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++)
		protobuf_c_message_free_unpacked((*list)[i], NULL);
	free(*list);
	*list = NULL;
	*n = 0;
}

/* Replace the entry whose key(entry) equals k, or append a copy. */
static int list_set(void ***list, size_t *n, const ProtobufCMessage *msg,
		    const char *(*key)(const void *), const char *k)
{
	ProtobufCMessage *copy = cn_pb_copy(msg);
	void **grown;
	size_t i;

	if (!copy)
		return -ENOMEM;
	for (i = 0; i < *n; i++)
		if (strcmp(key((*list)[i]), k) == 0) {
			protobuf_c_message_free_unpacked((*list)[i], NULL);
			(*list)[i] = copy;
			return 0;
		}
	grown = realloc(*list, (*n + 1) * sizeof(**list));
	if (!grown) {
		protobuf_c_message_free_unpacked(copy, NULL);
		return -ENOMEM;
	}
	*list = grown;
	(*list)[(*n)++] = copy;
	return 0;
}

static void list_del(void ***list, size_t *n, const char *(*key)(const void *),
		     const char *k)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(key((*list)[i]), k) == 0) {
			protobuf_c_message_free_unpacked((*list)[i], NULL);
			(*list)[i] = (*list)[--*n];
			return;
		}
}

static const char *user_key(const void *p)
{
	return ((const Canopy__V1__User *)p)->name;
}

static const char *role_key(const void *p)
{
	return ((const Canopy__V1__Role *)p)->name;
}

/* Grants are keyed by "object user". */
static const char *perm_key(const void *p)
{
	static __thread char k[256];
	const Canopy__V1__Permission *g = p;

	snprintf(k, sizeof(k), "%s %s", g->object, g->user);
	return k;
}

#define LIST(a, f) ((void ***)&(a)->f)

int mgr_auth_cache_user(struct manager *m, const Canopy__V1__User *u,
			bool removed)
{
	if (removed) {
		list_del(LIST(m->auth, users), &m->auth->n_users, user_key,
			 u->name);
		return 0;
	}
	return list_set(LIST(m->auth, users), &m->auth->n_users, &u->base,
			user_key, u->name);
}

int mgr_auth_cache_role(struct manager *m, const Canopy__V1__Role *r,
			bool removed)
{
	if (removed) {
		list_del(LIST(m->auth, roles), &m->auth->n_roles, role_key,
			 r->name);
		return 0;
	}
	return list_set(LIST(m->auth, roles), &m->auth->n_roles, &r->base,
			role_key, r->name);
}

int mgr_auth_cache_perm(struct manager *m, const Canopy__V1__Permission *g,
			bool removed)
{
	char k[256];

	snprintf(k, sizeof(k), "%s %s", g->object, g->user);
	if (removed) {
		list_del(LIST(m->auth, perms), &m->auth->n_perms, perm_key, k);
		return 0;
	}
	return list_set(LIST(m->auth, perms), &m->auth->n_perms, &g->base,
			perm_key, k);
}

Canopy__V1__User *mgr_auth_user(struct manager *m, const char *name)
{
	size_t i;

	for (i = 0; m->auth && name && i < m->auth->n_users; i++)
		if (strcmp(m->auth->users[i]->name, name) == 0)
			return m->auth->users[i];
	return NULL;
}

int mgr_auth_role_privs(struct manager *m, const char *name, uint32_t *privs)
{
	const struct auth_role_def *b = auth_builtin_role(name);
	uint32_t bit;
	size_t i, j;

	if (b) {
		*privs = b->privs;
		return 0;
	}
	for (i = 0; m->auth && i < m->auth->n_roles; i++) {
		const Canopy__V1__Role *r = m->auth->roles[i];

		if (strcmp(r->name, name) != 0)
			continue;
		*privs = 0;
		for (j = 0; j < r->n_privileges; j++) {
			bit = auth_priv_parse(r->privileges[j]);
			*privs |= bit;
		}
		return 0;
	}
	return -ENOENT;
}

int mgr_auth_object_parse(const char *s, enum auth_obj_kind *k, const char **id)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "cluster") == 0) {
		*k = AUTH_OBJ_CLUSTER;
		*id = NULL;
		return 0;
	}
	if (strncmp(s, "host/", 5) == 0 &&
	    mgr_name_valid(MGR_NAME_HOST, s + 5)) {
		*k = AUTH_OBJ_HOST;
		*id = s + 5;
		return 0;
	}
	if (strncmp(s, "vm/", 3) == 0 && mgr_name_valid(MGR_NAME_VM, s + 3)) {
		*k = AUTH_OBJ_VM;
		*id = s + 3;
		return 0;
	}
	return -EINVAL;
}

/* The current host of vm (from etcd) into host; "" when unknown. */
static void vm_host(struct manager *m, const char *vm, char *host, size_t n)
{
	Canopy__V1__Vm *rec = NULL;
	char key[MGR_KEY_MAX];

	host[0] = '\0';
	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, vm) ||
	    mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			(ProtobufCMessage **)&rec))
		return;
	snprintf(host, n, "%s", rec->host ? rec->host : "");
	canopy__v1__vm__free_unpacked(rec, NULL);
}

uint32_t mgr_auth_privs(struct manager *m, const char *user,
			enum auth_obj_kind kind, const char *id)
{
	struct auth_grant *g;
	struct auth_obj obj = { kind, id, NULL };
	char host[MGR_ID_MAX + 1];
	uint32_t privs = 0;
	bool on_vm = false, on_host = false;
	size_t i, n = 0;

	if (!m->auth || !m->auth->n_perms)
		return 0;
	g = calloc(m->auth->n_perms, sizeof(*g));
	if (!g)
		return 0;

	for (i = 0; i < m->auth->n_perms; i++) {
		const Canopy__V1__Permission *p = m->auth->perms[i];

		if (strcmp(p->user, user) != 0 ||
		    mgr_auth_object_parse(p->object, &g[n].kind, &g[n].id) ||
		    mgr_auth_role_privs(m, p->role, &g[n].privs))
			continue;
		on_host |= g[n].kind == AUTH_OBJ_HOST;
		on_vm |= g[n].kind == AUTH_OBJ_VM && id &&
			 strcmp(g[n].id, id) == 0;
		g[n++].user = p->user;
	}
	/* A VM's host matters only to a user with host grants and none on
	 * the VM itself: only then is the VM read (one etcd Get). */
	if (kind == AUTH_OBJ_VM && id && on_host && !on_vm) {
		vm_host(m, id, host, sizeof(host));
		obj.host = host[0] ? host : NULL;
	}
	privs = auth_effective(g, n, user, &obj);
	free(g);
	return privs;
}

bool mgr_auth_admin_left(struct manager *m, const char *gone_user,
			 const char *user, const char *role)
{
	uint32_t privs;
	size_t i, j;

	for (i = 0; i < m->auth->n_users; i++) {
		const char *u = m->auth->users[i]->name, *r = NULL;

		if (gone_user && strcmp(u, gone_user) == 0)
			continue;
		for (j = 0; j < m->auth->n_perms; j++)
			if (strcmp(m->auth->perms[j]->user, u) == 0 &&
			    strcmp(m->auth->perms[j]->object, "cluster") == 0)
				r = m->auth->perms[j]->role;
		if (user && strcmp(u, user) == 0)
			r = role;
		if (r && mgr_auth_role_privs(m, r, &privs) == 0 &&
		    (privs & AUTH_USER_MANAGE))
			return true;
	}
	return false;
}

void mgr_auth_forget(struct manager *m)
{
	free_list(LIST(m->auth, users), &m->auth->n_users);
	free_list(LIST(m->auth, roles), &m->auth->n_roles);
	free_list(LIST(m->auth, perms), &m->auth->n_perms);
}

/* prefix + a b (with '/' between them when b is given). */
static int auth_key(char *k, size_t n, const char *prefix, const char *a,
		    const char *b)
{
	int len = b ? snprintf(k, n, "%s%s/%s", prefix, a, b) :
		      snprintf(k, n, "%s%s", prefix, a);

	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

int mgr_auth_user_save(struct manager *m, const Canopy__V1__User *u)
{
	char key[MGR_KEY_MAX];
	int rc;

	if (!auth_user_valid(u->name))
		return -EINVAL;
	rc = auth_key(key, sizeof(key), MGR_PREFIX_USERS, u->name, NULL);
	if (!rc)
		rc = mgr_put_msg(m, key, &u->base, NULL, NULL, 0);
	return rc ? rc : mgr_auth_cache_user(m, u, false);
}

int mgr_auth_user_remove(struct manager *m, const Canopy__V1__User *u)
{
	char key[MGR_KEY_MAX], pkey[MGR_KEY_MAX];
	const char *keys[65];
	size_t i, n = 0;
	int rc;

	rc = auth_key(key, sizeof(key), MGR_PREFIX_USERS, u->name, NULL);
	if (rc)
		return rc;
	keys[n++] = key;
	/* The user's grants go with it (at most 64 in one txn). */
	for (i = 0; i < m->auth->n_perms && n < CN_ARRAY_SIZE(keys); i++) {
		const Canopy__V1__Permission *p = m->auth->perms[i];

		if (strcmp(p->user, u->name) != 0)
			continue;
		if (auth_key(pkey, sizeof(pkey), MGR_PREFIX_PERMS, p->object,
			     p->user) ||
		    !(keys[n] = strdup(pkey)))
			break;
		n++;
	}
	rc = mgr_delete_many(m, keys, n);
	for (i = 1; i < n; i++)
		free((char *)keys[i]);
	if (rc)
		return rc;
	for (i = m->auth->n_perms; i-- > 0;)
		if (strcmp(m->auth->perms[i]->user, u->name) == 0 &&
		    mgr_auth_cache_perm(m, m->auth->perms[i], true))
			break; /* removing never fails */
	return mgr_auth_cache_user(m, u, true);
}

int mgr_auth_role_save(struct manager *m, const Canopy__V1__Role *r,
		       bool removed)
{
	char key[MGR_KEY_MAX];
	int rc;

	rc = auth_key(key, sizeof(key), MGR_PREFIX_ROLES, r->name, NULL);
	if (!rc)
		rc = removed ? mgr_delete(m, key, NULL, 0) :
			       mgr_put_msg(m, key, &r->base, NULL, NULL, 0);
	return rc ? rc : mgr_auth_cache_role(m, r, removed);
}

int mgr_auth_perm_save(struct manager *m, const Canopy__V1__Permission *p,
		       bool removed)
{
	char key[MGR_KEY_MAX];
	int rc;

	rc = auth_key(key, sizeof(key), MGR_PREFIX_PERMS, p->object, p->user);
	if (!rc)
		rc = removed ? mgr_delete(m, key, NULL, 0) :
			       mgr_put_msg(m, key, &p->base, NULL, NULL, 0);
	return rc ? rc : mgr_auth_cache_perm(m, p, removed);
}
