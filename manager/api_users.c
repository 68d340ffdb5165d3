/* canopy-managerd: Login, WhoAmI and the user calls (add, list, password, delete). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "lib/log.h"
#include "manager/api_internal.h"
#include "manager/auth_kdf.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* A hash no password matches, checked for unknown users so that a login
 * takes as long whether or not the user exists. */
static const char dummy_hash[] =
	"scrypt$15$8$1$00000000000000000000000000000000$"
	"0000000000000000000000000000000000000000000000000000000000000000";

static struct kdf_job *job_new(struct manager *m, struct api_call *c,
			       void (*done)(struct kdf_job *))
{
	struct kdf_job *j = calloc(1, sizeof(*j));

	if (!j) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	j->m = m;
	j->c = c;
	j->done = done;
	return j;
}

static void job_start(struct kdf_job *j)
{
	struct api_call *c = j->c;
	int rc = mgr_kdf_submit(j);

	if (!rc)
		return;
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
	if (rc == -EBUSY)
		api_fail(c, CN_RESOURCE_EXHAUSTED,
			 "too many password checks at once; retry in a second");
	else
		api_fail(c, CN_INTERNAL, "cannot start a password check: %s",
			 cn_strerror(rc));
}

/* A new password into dst (AUTH_PW_MAX + 1 bytes); answers c if it is
 * too short or too long. */
static int new_pw(struct api_call *c, char *dst, const char *pw)
{
	size_t len = pw ? strnlen(pw, AUTH_PW_MAX + 1) : 0;

	if (len < AUTH_PW_MIN || len > AUTH_PW_MAX) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "a password has %d to %d bytes; choose another",
			 AUTH_PW_MIN, AUTH_PW_MAX);
		return -EINVAL;
	}
	memcpy(dst, pw, len + 1);
	return 0;
}

static void user_info(const Canopy__V1__User *u, Canopy__V1__UserInfo *i)
{
	int64_t now = (int64_t)mgr_unix_ms();

	i->name = u->name;
	i->description = u->description;
	i->created_ms = u->created_ms;
	i->locked = u->locked_until_ms > now;
	i->locked_until_ms = i->locked ? u->locked_until_ms : 0;
}

/* ---- Login ---------------------------------------------------------------- */

static void login_failed(struct manager *m, struct api_call *c,
			 Canopy__V1__User *u)
{
	Canopy__V1__User copy;

	if (u) {
		copy = *u;
		copy.failed_logins++;
		if (copy.failed_logins >= m->opt.lockout_failures) {
			copy.failed_logins = 0;
			copy.locked_until_ms = (int64_t)mgr_unix_ms() +
					       1000 * (int64_t)m->opt.lockout_s;
			log_warn("manager", "user locked after failed logins",
				 "user=%s seconds=%u", copy.name,
				 m->opt.lockout_s);
		}
		if (mgr_auth_user_save(m, &copy))
			log_warn("manager", "failed login not counted",
				 "user=%s", copy.name);
	}
	c->auth.denied = true;
	api_fail(c, CN_UNAUTHENTICATED, "wrong user name or password");
}

static void login_done(struct kdf_job *j)
{
	Canopy__V1__LoginResponse resp = CANOPY__V1__LOGIN_RESPONSE__INIT;
	struct manager *m = j->m;
	Canopy__V1__User *u = mgr_auth_user(m, j->user), copy;
	char tok[AUTH_TOKEN_MAX];
	int64_t expiry = (int64_t)time(NULL) + m->opt.token_ttl_s;

	if (!u || j->verify_rc) {
		login_failed(m, j->c, u);
		return;
	}
	if (u->locked_until_ms > (int64_t)mgr_unix_ms()) {
		j->c->auth.denied = true;
		api_fail(j->c, CN_UNAUTHENTICATED,
			 "user %s is locked after repeated failed logins; "
			 "wait or ask an administrator",
			 u->name);
		return;
	}
	if (u->failed_logins) {
		copy = *u;
		copy.failed_logins = 0;
		if (mgr_auth_user_save(m, &copy))
			log_warn("manager", "failed-login count not reset",
				 "user=%s", u->name);
		u = mgr_auth_user(m, j->user);
	}
	if (auth_token_make(m->auth->key, u->name, u->token_gen, expiry, tok,
			    sizeof(tok))) {
		api_fail(j->c, CN_INTERNAL, "cannot make a token");
		return;
	}
	resp.token = tok;
	resp.expires_unix = expiry;
	resp.user = u->name;
	api_reply(j->c, &resp.base);
	OPENSSL_cleanse(tok, sizeof(tok));
}

void api_login(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__LoginRequest *req = (const void *)r;
	struct manager *m = arg;
	Canopy__V1__User *u;
	struct kdf_job *j;

	snprintf(c->auth.user, sizeof(c->auth.user), "%.64s",
		 auth_user_valid(req->user) ? req->user : "-");
	if (!m->auth || !m->auth->loaded) {
		api_fail(c, CN_UNAVAILABLE,
			 "the leader is still loading users; "
			 "retry in a few seconds");
		return;
	}
	j = job_new(m, c, login_done);
	if (!j)
		return;
	u = auth_user_valid(req->user) ? mgr_auth_user(m, req->user) : NULL;
	snprintf(j->user, sizeof(j->user), "%s", u ? u->name : "");
	snprintf(j->verify_hash, sizeof(j->verify_hash), "%s",
		 u ? u->password_hash : dummy_hash);
	/* A password of a length never accepted is still checked (it fails)
	 * so that its timing tells nothing. */
	if (req->password &&
	    strnlen(req->password, AUTH_PW_MAX + 1) <= AUTH_PW_MAX)
		snprintf(j->verify_pw, sizeof(j->verify_pw), "%s",
			 req->password);
	j->do_verify = true;
	job_start(j);
}

/* ---- WhoAmI ----------------------------------------------------------------- */

void api_whoami(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	Canopy__V1__WhoamiResponse resp = CANOPY__V1__WHOAMI_RESPONSE__INIT;
	struct manager *m = arg;
	const char *names[32];
	uint32_t privs, bit;
	size_t n = 0;

	(void)r;
	privs = mgr_auth_privs(m, c->auth.user, AUTH_OBJ_CLUSTER, NULL);
	for (bit = 1; bit & AUTH_PRIV_ALL && n < CN_ARRAY_SIZE(names);
	     bit <<= 1)
		if (privs & bit)
			names[n++] = auth_priv_name(bit);
	resp.user = c->auth.user;
	resp.expires_unix = c->auth.expiry;
	resp.n_cluster_privileges = n;
	resp.cluster_privileges = (char **)names;
	api_reply(c, &resp.base);
}

/* ---- users -------------------------------------------------------------------- */

static void reply_user(struct api_call *c, const Canopy__V1__User *u)
{
	Canopy__V1__UserResponse resp = CANOPY__V1__USER_RESPONSE__INIT;
	Canopy__V1__UserInfo info = CANOPY__V1__USER_INFO__INIT;

	user_info(u, &info);
	resp.user = &info;
	api_reply(c, &resp.base);
}

static void add_done(struct kdf_job *j)
{
	Canopy__V1__User u = CANOPY__V1__USER__INIT;
	struct manager *m = j->m;
	int rc;

	if (j->hash_rc) {
		api_fail(j->c, CN_INTERNAL, "cannot hash the password");
		return;
	}
	if (mgr_auth_user(m, j->user)) {
		api_fail(j->c, CN_ALREADY_EXISTS, "user %s exists", j->user);
		return;
	}
	u.name = j->user;
	u.password_hash = j->new_hash;
	u.created_ms = (int64_t)mgr_unix_ms();
	u.description = j->desc;
	rc = mgr_auth_user_save(m, &u);
	if (rc) {
		mgr_fail_store(m, j->c, rc, "storing the user");
		return;
	}
	reply_user(j->c, mgr_auth_user(m, j->user));
}

void api_add_user(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__AddUserRequest *req = (const void *)r;
	struct manager *m = arg;
	struct kdf_job *j;

	if (!auth_user_valid(req->name)) {
		api_fail(
			c, CN_INVALID_ARGUMENT,
			"a user name has 1 to %d characters of a-z 0-9 _ . @ -",
			AUTH_USER_MAX);
		return;
	}
	if (mgr_auth_user(m, req->name)) {
		api_fail(c, CN_ALREADY_EXISTS,
			 "user %s exists; use 'canopy user passwd' to change "
			 "its password",
			 req->name);
		return;
	}
	j = job_new(m, c, add_done);
	if (!j)
		return;
	if (new_pw(c, j->new_pw, req->password)) {
		free(j);
		return;
	}
	snprintf(j->user, sizeof(j->user), "%s", req->name);
	snprintf(j->desc, sizeof(j->desc), "%s",
		 req->description ? req->description : "");
	j->do_hash = true;
	job_start(j);
}

void api_list_users(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	Canopy__V1__ListUsersResponse resp =
		CANOPY__V1__LIST_USERS_RESPONSE__INIT;
	Canopy__V1__UserInfo *infos, **ptrs;
	struct manager *m = arg;
	size_t i, n = m->auth->n_users;

	(void)r;
	infos = calloc(n ? n : 1, sizeof(*infos));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		canopy__v1__user_info__init(&infos[i]);
		user_info(m->auth->users[i], &infos[i]);
		ptrs[i] = &infos[i];
	}
	resp.n_users = n;
	resp.users = ptrs;
	api_reply(c, &resp.base);
out:
	free(infos);
	free(ptrs);
}

static void passwd_done(struct kdf_job *j)
{
	struct manager *m = j->m;
	Canopy__V1__User *u = mgr_auth_user(m, j->user), copy;
	int rc;

	if (!u) {
		api_fail(j->c, CN_NOT_FOUND, "user %s does not exist", j->user);
		return;
	}
	if (j->do_verify && j->verify_rc) {
		j->c->auth.denied = true;
		api_fail(j->c, CN_PERMISSION_DENIED,
			 "the old password is wrong");
		return;
	}
	if (j->hash_rc) {
		api_fail(j->c, CN_INTERNAL, "cannot hash the password");
		return;
	}
	copy = *u;
	copy.password_hash = j->new_hash;
	copy.token_gen++; /* every older token of the user stops working */
	copy.failed_logins = 0;
	copy.locked_until_ms = 0;
	rc = mgr_auth_user_save(m, &copy);
	if (rc) {
		mgr_fail_store(m, j->c, rc, "storing the password");
		return;
	}
	reply_user(j->c, mgr_auth_user(m, j->user));
}

/* Own password: the old one is needed; another's: user.manage. */
void api_set_password(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__SetPasswordRequest *req = (const void *)r;
	struct manager *m = arg;
	const Canopy__V1__User *u;
	bool self = req->name && strcmp(req->name, c->auth.user) == 0;
	struct kdf_job *j;

	if (!self && !(mgr_auth_privs(m, c->auth.user, AUTH_OBJ_CLUSTER, NULL) &
		       AUTH_USER_MANAGE)) {
		c->auth.denied = true;
		api_fail(c, CN_PERMISSION_DENIED,
			 "user %s lacks the privilege user.manage on cluster "
			 "(needed to set another user's password)",
			 c->auth.user);
		return;
	}
	u = auth_user_valid(req->name) ? mgr_auth_user(m, req->name) : NULL;
	if (!u) {
		api_fail(c, CN_NOT_FOUND,
			 "user %s does not exist; see 'canopy "
			 "user list'",
			 req->name ? req->name : "");
		return;
	}
	j = job_new(m, c, passwd_done);
	if (!j)
		return;
	if (new_pw(c, j->new_pw, req->password)) {
		free(j);
		return;
	}
	snprintf(j->user, sizeof(j->user), "%s", u->name);
	j->do_hash = true;
	if (self) {
		j->do_verify = true;
		snprintf(j->verify_hash, sizeof(j->verify_hash), "%s",
			 u->password_hash);
		if (req->old_password &&
		    strnlen(req->old_password, AUTH_PW_MAX + 1) <= AUTH_PW_MAX)
			snprintf(j->verify_pw, sizeof(j->verify_pw), "%s",
				 req->old_password);
	}
	job_start(j);
}

void api_delete_user(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__DeleteUserRequest *req = (const void *)r;
	Canopy__V1__UserResponse resp = CANOPY__V1__USER_RESPONSE__INIT;
	Canopy__V1__UserInfo info = CANOPY__V1__USER_INFO__INIT;
	struct manager *m = arg;
	Canopy__V1__User *u;
	int rc;

	u = auth_user_valid(req->name) ? mgr_auth_user(m, req->name) : NULL;
	if (!u) {
		api_fail(c, CN_NOT_FOUND, "user %s does not exist",
			 req->name ? req->name : "");
		return;
	}
	if (strcmp(u->name, c->auth.user) == 0) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "you cannot delete yourself; log in as another "
			 "administrator");
		return;
	}
	if (!mgr_auth_admin_left(m, u->name, NULL, NULL)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "user %s is the last with user.manage on the cluster; "
			 "grant Administrator to another user first",
			 u->name);
		return;
	}
	user_info(u, &info);
	info.name = strdup(u->name);
	if (!info.name) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	info.description = (char *)"";
	rc = mgr_auth_user_remove(m, u);
	if (rc) {
		mgr_fail_store(m, c, rc, "deleting the user");
	} else {
		resp.user = &info;
		api_reply(c, &resp.base);
	}
	free(info.name);
}
