/* canopy-managerd: the API gate: standby check, then token, then privilege on the call's object. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "lib/log.h"
#include "manager/api_internal.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* The bearer token of c's metadata into tok; 0 or -ENOENT. */
static int bearer(const struct api_call *c, char *tok, size_t n)
{
	static const char pfx[] = "Bearer ";
	size_t i, len;

	for (i = 0; i < c->md.count; i++) {
		const grpc_metadata *e = &c->md.metadata[i];
		const char *v = (const char *)GRPC_SLICE_START_PTR(e->value);

		len = GRPC_SLICE_LENGTH(e->value);
		if (GRPC_SLICE_LENGTH(e->key) != 13 ||
		    memcmp(GRPC_SLICE_START_PTR(e->key), "authorization", 13) !=
			    0)
			continue;
		if (len < sizeof(pfx) - 1 || len - (sizeof(pfx) - 1) >= n ||
		    memcmp(v, pfx, sizeof(pfx) - 1) != 0)
			return -ENOENT;
		len -= sizeof(pfx) - 1;
		memcpy(tok, v + sizeof(pfx) - 1, len);
		tok[len] = '\0';
		return 0;
	}
	return -ENOENT;
}

static void deny(struct api_call *c, enum cn_code code, const char *fmt, ...)
	CN_PRINTF(3, 4);

static void deny(struct api_call *c, enum cn_code code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->auth.denied = true;
	api_fail(c, code, "%s", msg);
}

/* The object of the call ("vm/web1", "cluster"), for messages and the
 * audit. */
static void object_name(struct api_call *c, const struct auth_rule *r,
			const ProtobufCMessage *req)
{
	const char *id = auth_rule_object(r, req);

	if (!id[0])
		snprintf(c->auth.object, sizeof(c->auth.object), "cluster");
	else if (r->label)
		snprintf(c->auth.object, sizeof(c->auth.object), "%s/%.128s",
			 r->label, id);
	else
		snprintf(c->auth.object, sizeof(c->auth.object), "%.128s", id);
}

/* Token checks; fills c->auth.user. 0, or c ended and nonzero. */
static int authenticate(struct manager *m, struct api_call *c)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_token t;
	const Canopy__V1__User *u;
	int rc;

	if (bearer(c, tok, sizeof(tok))) {
		deny(c, CN_UNAUTHENTICATED,
		     "no token: log in first ('canopy login'; API clients "
		     "send \"authorization: Bearer TOKEN\" from Login)");
		return 1;
	}
	rc = auth_token_check(m->auth->key, tok, (int64_t)time(NULL), &t);
	if (rc == -EKEYEXPIRED) {
		deny(c, CN_UNAUTHENTICATED,
		     "the token of %s has expired; log in again", t.user);
		return 1;
	}
	if (rc) {
		deny(c, CN_UNAUTHENTICATED,
		     "the token is not valid (damaged, forged or from another "
		     "cluster); log in again");
		return 1;
	}
	u = mgr_auth_user(m, t.user);
	if (!u || u->token_gen != t.gen) {
		deny(c, CN_UNAUTHENTICATED,
		     "the token of %s was revoked (password changed, user "
		     "locked or deleted); log in again",
		     t.user);
		return 1;
	}
	snprintf(c->auth.user, sizeof(c->auth.user), "%s", t.user);
	c->auth.expiry = t.expiry;
	return 0;
}

int mgr_api_gate_auth(void *arg, struct api_call *c,
		      const ProtobufCMessage *req)
{
	struct manager *m = arg;
	const struct auth_rule *r;
	uint32_t privs;

	if (mgr_api_gate(arg, c))
		return 1;
	r = auth_rule_find(c->method);
	c->auth.rule = r;
	if (!r) {
		deny(c, CN_PERMISSION_DENIED,
		     "method %s has no access rule in this manager; nobody "
		     "may call it",
		     c->method);
		return 1;
	}
	object_name(c, r, req);
	if (r->public_)
		return 0;
	if (!m->auth || !m->auth->loaded) {
		api_fail(c, CN_UNAVAILABLE,
			 "the leader is still loading users; retry in a few "
			 "seconds");
		return 1;
	}
	if (authenticate(m, c))
		return 1;
	if (!r->priv)
		return 0;
	privs = mgr_auth_privs(
		m, c->auth.user, r->obj,
		r->obj == AUTH_OBJ_CLUSTER ? NULL : auth_rule_object(r, req));
	if (privs & r->priv)
		return 0;
	deny(c, CN_PERMISSION_DENIED,
	     "user %s lacks the privilege %s on %s; ask an administrator "
	     "to grant a role that has it",
	     c->auth.user, auth_priv_name(r->priv), c->auth.object);
	return 1;
}
