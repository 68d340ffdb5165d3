/*
 * canopy-managerd: the pure parts of users and roles (issue 9 item 3).
 *
 * Passwords (auth_pw.c): scrypt, a memory-hard KDF (OpenSSL
 * EVP_PBE_scrypt), stored as
 *   scrypt$LN$R$P$SALT_HEX$KEY_HEX
 * and compared in constant time. Tokens (auth_token.c): a short-lived
 * bearer token signed with HMAC-SHA256 under a cluster-wide key,
 *   cn1:USER:GEN:EXPIRY:NONCE_HEX:MAC_HEX
 * where GEN is the user's token generation (bumped by a password change or
 * a lock, so every older token stops working at once). Privileges and roles
 * (auth_priv.c): a fixed privilege list, built-in roles, and the effective
 * privileges of a user on an object: the grant on the most specific object
 * (VM, then its host, then the cluster) wins, as in vSphere, so a NoAccess
 * grant on one VM overrides an Administrator grant on the cluster.
 *
 * Everything here is pure (no etcd, no gRPC) and may be called from any
 * thread; callers own all buffers.
 */
#ifndef CANOPY_MANAGER_AUTH_H
#define CANOPY_MANAGER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

/* Passwords: bytes accepted (a longer one is refused, not cut). */
#define AUTH_PW_MIN 8
#define AUTH_PW_MAX 1024
/* Room for a stored hash, with its NUL. */
#define AUTH_PW_HASH_MAX 160
/* User names: [a-z0-9_.@-], 1..AUTH_USER_MAX bytes. */
#define AUTH_USER_MAX 64
/* Room for a token, with its NUL. */
#define AUTH_TOKEN_MAX 256
/* Token signing key bytes. */
#define AUTH_KEY_LEN 32

/*
 * Hashes `pw` (NUL-terminated, AUTH_PW_MIN..AUTH_PW_MAX bytes) with a fresh
 * random salt into `out` (`n` >= AUTH_PW_HASH_MAX). Takes ~32 MiB and
 * tens of milliseconds on purpose.
 * Returns 0, -EINVAL (length out of bounds), -ENOSPC, -EIO (OpenSSL).
 */
int auth_pw_hash(const char *pw, char *out, size_t n) CN_MUST_CHECK;

/*
 * Checks `pw` against a stored hash, in time independent of where they
 * differ. A stored hash whose cost parameters are outside what auth_pw_hash
 * could have written (a hostile etcd value asking for gigabytes) is refused
 * without deriving anything.
 * Returns 0 on a match, -EACCES on a mismatch, -EINVAL for a malformed
 * stored value, -EIO (OpenSSL).
 */
int auth_pw_verify(const char *pw, const char *stored) CN_MUST_CHECK;

/* True when `name` is a valid user name. */
bool auth_user_valid(const char *name);

struct auth_token {
	char user[AUTH_USER_MAX + 1];
	uint64_t gen; /* the user's token generation when issued */
	int64_t expiry; /* unix seconds */
};

/*
 * Writes a token for `user` (generation `gen`, valid until `expiry`) signed
 * with `key` (AUTH_KEY_LEN bytes) into `out` (`n` >= AUTH_TOKEN_MAX).
 * Returns 0, -EINVAL (bad user), -ENOSPC, -EIO.
 */
int auth_token_make(const uint8_t *key, const char *user, uint64_t gen,
		    int64_t expiry, char *out, size_t n) CN_MUST_CHECK;

/*
 * Checks `tok` (from the network: any bytes) against `key` at time `now`
 * and fills `t`. The MAC is checked (constant time) before any field is
 * believed. Returns 0, -EBADMSG (malformed), -EACCES (bad signature),
 * -EKEYEXPIRED (expired).
 */
int auth_token_check(const uint8_t *key, const char *tok, int64_t now,
		     struct auth_token *t) CN_MUST_CHECK;

/* Privileges: one bit each. */
enum auth_priv {
	AUTH_SYSTEM_READ = 1u << 0, /* see the inventory, tasks, events */
	AUTH_VM_POWER = 1u << 1, /* start, stop, pause, resume */
	AUTH_VM_CREATE = 1u << 2,
	AUTH_VM_DELETE = 1u << 3,
	AUTH_VM_MIGRATE = 1u << 4,
	AUTH_VM_CONSOLE = 1u << 5, /* read and type on the console */
	AUTH_HOST_MAINTENANCE = 1u << 6,
	AUTH_HOST_REMOVE = 1u << 7,
	AUTH_IMAGE_IMPORT = 1u << 8,
	AUTH_TASK_CANCEL = 1u << 9,
	AUTH_USER_MANAGE = 1u << 10, /* users, roles, permissions */
	AUTH_AUDIT_READ = 1u << 11,
	AUTH_HOST_ADD = 1u << 12, /* let a host join (its join token) */
	/* end an in-doubt migration (ResolveMigration) */
	AUTH_VM_MIGRATE_RESOLVE = 1u << 13,
	AUTH_PRIV_ALL = (1u << 14) - 1,
};

/* The privilege named `name` ("vm.power"), or 0 when there is none. */
uint32_t auth_priv_parse(const char *name);

/* The name of one privilege bit, or NULL. */
const char *auth_priv_name(uint32_t bit);

/*
 * Parses a comma-separated privilege list into a mask. Returns 0 or
 * -EINVAL naming nothing: `*bad` (if not NULL) points at the first unknown
 * name in `list`.
 */
int auth_priv_parse_list(const char *list, uint32_t *mask,
			 const char **bad) CN_MUST_CHECK;

struct auth_role_def {
	const char *name;
	uint32_t privs;
	const char *about;
};

/* The built-in roles (Administrator, Operator, ReadOnly, NoAccess). */
const struct auth_role_def *auth_builtin_roles(size_t *count);

/* The built-in role named `name`, or NULL. */
const struct auth_role_def *auth_builtin_role(const char *name);

/* An object permissions are granted on and checked against. */
enum auth_obj_kind {
	AUTH_OBJ_CLUSTER,
	AUTH_OBJ_HOST,
	AUTH_OBJ_VM,
};

struct auth_obj {
	enum auth_obj_kind kind;
	const char *id; /* host or VM name; NULL for the cluster */
	const char *host; /* a VM's current host, or NULL */
};

/* One grant: `user` has the privileges `privs` on `obj`. */
struct auth_grant {
	enum auth_obj_kind kind;
	const char *id; /* NULL for the cluster */
	const char *user;
	uint32_t privs;
};

/*
 * The privileges `user` holds on `obj`: those of the grant on the most
 * specific object among obj itself, its host (for a VM) and the cluster.
 * 0 when no grant applies.
 */
uint32_t auth_effective(const struct auth_grant *g, size_t n, const char *user,
			const struct auth_obj *obj);

#endif
