/*
 * canopy-managerd: users, roles, permissions and the audit log as the
 * manager runs them (docs/security.md). The pure parts are manager/auth.h.
 *
 * State (struct mgr_auth, leader only): the users, custom roles and grants
 * read from etcd when this manager becomes leader and kept in step by its
 * own writes (only the leader writes them: every write is fenced); the
 * token signing key (/canopy/meta/token-key, made once by the first
 * leader); the audit sequence and this manager's audit file.
 *
 * Every call passes the gate (auth_gate.c): a standby answers UNAVAILABLE;
 * else the call needs a valid token (metadata "authorization: Bearer T")
 * unless it is Login, and the privilege its rule names on its object
 * (auth_methods.c), or it is answered UNAUTHENTICATED / PERMISSION_DENIED.
 * Calls that change something and every denied call are audited when they
 * end (audit.c). Loop thread only, except the password check of Login,
 * which runs on a thread of its own (scrypt takes tens of ms).
 */
#ifndef CANOPY_MANAGER_AUTH_MGR_H
#define CANOPY_MANAGER_AUTH_MGR_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/audit_chain.h"
#include "manager/auth.h"
#include "proto/canopy_auth.pb-c.h"

struct manager;
struct api_call;
struct api_method;

#define MGR_PREFIX_USERS "/canopy/users/"
#define MGR_PREFIX_ROLES "/canopy/roles/"
#define MGR_PREFIX_PERMS "/canopy/perms/"
#define MGR_PREFIX_AUDIT "/canopy/audit/"
#define MGR_KEY_TOKEN_KEY "/canopy/meta/token-key"
#define MGR_KEY_AUDIT_SEQ "/canopy/meta/audit-seq"

/* Defaults of the options. */
#define MGR_TOKEN_TTL_S_DEFAULT 3600
#define MGR_LOCKOUT_FAILURES_DEFAULT 5
#define MGR_LOCKOUT_S_DEFAULT 300
/* The audit file is fdatasync'd at most this often (and at close). */
#define MGR_AUDIT_SYNC_MS 1000

/* What a method needs (auth_methods.c). */
struct auth_rule {
	const char *method; /* "VmService/StartVm" */
	uint32_t priv; /* 0: a valid token is enough */
	enum auth_obj_kind obj; /* what priv is checked on */
	const char *field; /* request field naming the object ("spec.name") */
	const char *label; /* audit: the object is "label/ID"; NULL: ID */
	bool mutates; /* audited when it ends */
	bool public_; /* no token needed (Login) */
};

/* The rule of a full method name ("/canopy.v1.VmService/StartVm"), or
 * NULL for a method without one (refused: a method added without a rule
 * is never open by mistake). */
const struct auth_rule *auth_rule_find(const char *method);
/* Rules, for the table-driven tests. */
const struct auth_rule *auth_rule_at(size_t i);

/* The object id a rule names in req ("" when the field is empty or the
 * rule's object is the cluster): points into req. */
const char *auth_rule_object(const struct auth_rule *r,
			     const ProtobufCMessage *req);

struct mgr_auth {
	bool loaded;
	uint8_t key[AUTH_KEY_LEN];
	Canopy__V1__User **users;
	size_t n_users;
	Canopy__V1__Role **roles; /* custom ones */
	size_t n_roles;
	Canopy__V1__Permission **perms;
	size_t n_perms;
	/* audit */
	uint64_t audit_seq;
	int audit_fd; /* -1: none */
	uint64_t audit_synced_ms; /* monotonic time of the last fdatasync */
	struct audit_verify audit; /* the file's chain so far */
};

/* Per-call auth state kept on the call (struct api_call.auth). */
struct auth_call {
	const struct auth_rule *rule;
	char user[AUTH_USER_MAX + 1]; /* "" before a login */
	char object[160]; /* "vm/web1" */
	int64_t expiry; /* of the token */
	bool denied;
};

/* auth_state.c: load everything on becoming leader (creating the token key
 * and, when there is no user at all and a password file was given, the
 * user "admin" with Administrator on the cluster). 0 or -errno. */
CN_MUST_CHECK int mgr_auth_start(struct manager *m);
/* Forget it all (stepping down, shutdown). */
void mgr_auth_stop(struct manager *m);
/* The cached user, or NULL. */
Canopy__V1__User *mgr_auth_user(struct manager *m, const char *name);
/* Privileges of user on an object (a VM's host is looked up). */
uint32_t mgr_auth_privs(struct manager *m, const char *user,
			enum auth_obj_kind kind, const char *id);
/* The privileges of role name (built-in or custom); -ENOENT if none. */
CN_MUST_CHECK int mgr_auth_role_privs(struct manager *m, const char *name,
				      uint32_t *privs);
/* Store user (fenced) and update the cache. 0 or -errno. */
CN_MUST_CHECK int mgr_auth_user_save(struct manager *m,
				     const Canopy__V1__User *u);
/* Delete user and its grants (fenced), and from the cache. */
CN_MUST_CHECK int mgr_auth_user_remove(struct manager *m,
				       const Canopy__V1__User *u);
/* Store or delete a custom role / a grant (fenced), and cache it. */
CN_MUST_CHECK int mgr_auth_role_save(struct manager *m,
				     const Canopy__V1__Role *r, bool removed);
CN_MUST_CHECK int mgr_auth_perm_save(struct manager *m,
				     const Canopy__V1__Permission *p,
				     bool removed);
/* The cache alone (loading; after a store write). 0 or -ENOMEM. */
CN_MUST_CHECK int mgr_auth_cache_user(struct manager *m,
				      const Canopy__V1__User *u, bool removed);
CN_MUST_CHECK int mgr_auth_cache_role(struct manager *m,
				      const Canopy__V1__Role *r, bool removed);
CN_MUST_CHECK int mgr_auth_cache_perm(struct manager *m,
				      const Canopy__V1__Permission *p,
				      bool removed);
/* Whether some user would still hold user.manage on the cluster if
 * gone_user (or NULL) were deleted and user's cluster grant (user NULL: no
 * change) became role (NULL: revoked). Keeps the cluster manageable. */
bool mgr_auth_admin_left(struct manager *m, const char *gone_user,
			 const char *user, const char *role);
/* Free the cached users, roles and grants. */
void mgr_auth_forget(struct manager *m);
/* Parse "cluster", "host/ID", "vm/NAME". 0 or -EINVAL. */
CN_MUST_CHECK int mgr_auth_object_parse(const char *s, enum auth_obj_kind *k,
					const char **id);

/* auth_gate.c: the API gate (standby check, token, privilege). */
int mgr_api_gate_auth(void *arg, struct api_call *c,
		      const ProtobufCMessage *req);

/* audit.c: record the end of call c with its code and message (called by
 * the server for every call; records mutating and denied ones). */
void mgr_audit_call_end(void *arg, struct api_call *c, int code,
			const char *msg);
/* Open the audit file (creating it 0600) and verify what is in it. */
CN_MUST_CHECK int mgr_audit_open(struct manager *m);
void mgr_audit_close(struct manager *m);

#endif
