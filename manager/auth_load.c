/* canopy-managerd: loading users, roles, grants and the token key on becoming leader; the first admin. */
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
#include "manager/api_internal.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

static int cache_user(struct manager *m, const char *name,
		      const ProtobufCMessage *msg)
{
	(void)name;
	return mgr_auth_cache_user(m, (const Canopy__V1__User *)msg, false);
}

static int cache_role(struct manager *m, const char *name,
		      const ProtobufCMessage *msg)
{
	(void)name;
	return mgr_auth_cache_role(m, (const Canopy__V1__Role *)msg, false);
}

static int cache_perm(struct manager *m, const char *name,
		      const ProtobufCMessage *msg)
{
	(void)name;
	return mgr_auth_cache_perm(m, (const Canopy__V1__Permission *)msg,
				   false);
}

/* Read the token key, making it first if no leader did yet. */
static int token_key(struct manager *m)
{
	Canopy__V1__TokenKey k = CANOPY__V1__TOKEN_KEY__INIT, *got = NULL;
	uint8_t fresh[AUTH_KEY_LEN], buf[64];
	size_t n;
	int rc;

	if (RAND_bytes(fresh, sizeof(fresh)) != 1)
		return -EIO;
	k.key.data = fresh;
	k.key.len = sizeof(fresh);
	k.created_ms = (int64_t)mgr_unix_ms();
	n = canopy__v1__token_key__pack(&k, buf);
	rc = etcd_kv_create(m->etcd, MGR_KEY_TOKEN_KEY, buf, n, 0, NULL);
	OPENSSL_cleanse(fresh, sizeof(fresh));
	OPENSSL_cleanse(buf, sizeof(buf));
	if (rc && rc != -EEXIST)
		return rc;
	rc = mgr_get_msg(m, MGR_KEY_TOKEN_KEY,
			 &canopy__v1__token_key__descriptor,
			 (ProtobufCMessage **)&got);
	if (rc)
		return rc;
	if (got->key.len != AUTH_KEY_LEN)
		rc = -EBADMSG;
	else
		memcpy(m->auth->key, got->key.data, AUTH_KEY_LEN);
	OPENSSL_cleanse(got->key.data, got->key.len);
	canopy__v1__token_key__free_unpacked(got, NULL);
	return rc;
}

/* The password in path: its first line, at most AUTH_PW_MAX bytes. */
static int read_password(const char *path, char *pw, size_t n)
{
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read(fd, pw, n - 1);
	close(fd);
	if (r < 0)
		return -errno;
	pw[r] = '\0';
	pw[strcspn(pw, "\r\n")] = '\0';
	return 0;
}

/* No user at all: make "admin" (Administrator on the cluster) from the
 * password file, if one was given. */
static int bootstrap(struct manager *m)
{
	Canopy__V1__User u = CANOPY__V1__USER__INIT;
	Canopy__V1__Permission p = CANOPY__V1__PERMISSION__INIT;
	char pw[AUTH_PW_MAX + 2], hash[AUTH_PW_HASH_MAX];
	int rc;

	if (m->auth->n_users)
		return 0;
	if (!m->opt.admin_password_file) {
		log_warn("manager", "no users exist and no "
				    "--admin-password-file was given: nobody "
				    "can log in");
		return 0;
	}
	rc = read_password(m->opt.admin_password_file, pw, sizeof(pw));
	if (!rc)
		rc = auth_pw_hash(pw, hash, sizeof(hash));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc) {
		log_error("manager", "cannot use the admin password file",
			  "file=%s err=%d (8 to 1024 bytes on its first line)",
			  m->opt.admin_password_file, rc);
		return rc;
	}
	u.name = (char *)"admin";
	u.password_hash = hash;
	u.created_ms = (int64_t)mgr_unix_ms();
	u.description = (char *)"made at the first start";
	p.object = (char *)"cluster";
	p.user = (char *)"admin";
	p.role = (char *)"Administrator";
	rc = mgr_auth_user_save(m, &u);
	if (!rc)
		rc = mgr_auth_perm_save(m, &p, false);
	if (!rc)
		log_info("manager", "created the first user", "user=admin");
	return rc;
}

int mgr_auth_start(struct manager *m)
{
	int rc;

	mgr_auth_stop(m);
	m->auth = calloc(1, sizeof(*m->auth));
	if (!m->auth)
		return -ENOMEM;
	m->auth->audit_fd = -1;
	rc = token_key(m);
	if (!rc)
		rc = mgr_load_prefix(m, MGR_PREFIX_USERS,
				     &canopy__v1__user__descriptor, cache_user);
	if (!rc)
		rc = mgr_load_prefix(m, MGR_PREFIX_ROLES,
				     &canopy__v1__role__descriptor, cache_role);
	if (!rc)
		rc = mgr_load_prefix(m, MGR_PREFIX_PERMS,
				     &canopy__v1__permission__descriptor,
				     cache_perm);
	if (!rc)
		rc = bootstrap(m);
	if (!rc)
		rc = mgr_audit_open(m);
	if (!rc) {
		m->auth->loaded = true;
		if (m->api)
			api_server_set_on_end(m->api, mgr_audit_call_end);
	}
	return rc;
}

void mgr_auth_stop(struct manager *m)
{
	struct mgr_auth *a = m->auth;

	if (!a)
		return;
	mgr_audit_close(m);
	mgr_auth_forget(m);
	OPENSSL_cleanse(a->key, sizeof(a->key));
	free(a);
	m->auth = NULL;
}
