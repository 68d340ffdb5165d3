/* canopy-managerd: host enrolment: AddHost's one-time join token, and the host's enrol request over the bus. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lib/bus_enrol.h"
#include "lib/bus_keys.h"
#include "lib/log.h"
#include "lib/pki.h"
#include "manager/api_internal.h"
#include "manager/hosts.h"
#include "manager/manager.h"

/* The host's TLS identity, as PEM texts (free with ident_clear). */
struct ident {
	char *ca;
	char *chain;
	char *key;
};

static void ident_clear(struct ident *id)
{
	free(id->ca);
	free(id->chain);
	if (id->key) {
		OPENSSL_cleanse(id->key, strlen(id->key));
		free(id->key);
	}
	memset(id, 0, sizeof(*id));
}

/* A certificate for host (client and server: migration streams) from the
 * cluster CA, named by the host id and, when given, its address. */
static int ident_issue(struct manager *m, const char *host, const char *address,
		       struct ident *out, char *err, size_t errlen)
{
	const char *sans[2] = { host, address };
	struct pki_cert_req req = {
		.cn = host,
		.sans = sans,
		.n_sans = address && address[0] ? 2 : 1,
		.usage = PKI_USAGE_SERVER | PKI_USAGE_CLIENT,
	};
	struct pki_ca ca = { 0 };
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	rc = pki_ca_load(m->opt.state_dir, &ca, err, errlen);
	if (!rc)
		rc = pki_cert_issue(&ca, &req, &key, &cert, err, errlen);
	if (!rc) {
		X509 *chain[2] = { cert, ca.cert };

		rc = pki_certs_pem(chain, 2, &out->chain);
		if (!rc)
			rc = pki_certs_pem(&ca.cert, 1, &out->ca);
		if (!rc)
			rc = pki_key_pem(key, &out->key);
		if (rc)
			snprintf(err, errlen, "cannot write PEM: %s",
				 cn_strerror(rc));
	}
	EVP_PKEY_free(key);
	X509_free(cert);
	pki_ca_clear(&ca);
	if (rc)
		ident_clear(out);
	return rc;
}

/* Is key free to become host's own? NULL, or why not. */
static const char *new_key_check(struct manager *m, const char *host,
				 const char *key, const char *enrol_key)
{
	size_t i;

	if (!bus_key_valid(key))
		return "public_key must be a CURVE key: 40 characters of Z85";
	if (strcmp(key, enrol_key) == 0 || strcmp(key, m->bus_public) == 0)
		return "public_key must be a key the host just made";
	for (i = 0; i < m->n_hostkeys; i++)
		if (strcmp(m->hostkeys[i].key, key) == 0 &&
		    strcmp(m->hostkeys[i].host, host) != 0)
			return "public_key is another host's key";
	return NULL;
}

static void enrol_reply(struct manager *m, const char *host,
			const Canopy__V1__Envelope *req, const struct ident *id)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__EnrolReply r = CANOPY__V1__ENROL_REPLY__INIT;

	r.ca_pem = id->ca;
	r.cert_pem = id->chain;
	r.key_pem = id->key;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_ENROL_REPLY;
	env.enrol_reply = &r;
	if (bus_server_reply(m->bus, host, req, &env))
		log_warn("manager",
			 "enrol reply not sent; the host may ask "
			 "for a new token",
			 "host=%s", host);
}

void mgr_bus_enrol(void *arg, const char *host, const char *key,
		   const Canopy__V1__Envelope *env)
{
	Canopy__V1__HostKey rec = CANOPY__V1__HOST_KEY__INIT;
	const Canopy__V1__EnrolRequest *r = env->enrol;
	struct manager *m = arg;
	struct ident id = { 0 };
	const char *bad;
	char err[512];
	int rc;

	bad = new_key_check(m, host, r->public_key, key);
	if (!bad && r->address[0] &&
	    (strlen(r->address) > PKI_NAME_MAX || !pki_name_valid(r->address)))
		bad = "address must be a host name or IP address";
	if (bad) {
		log_warn("manager", "enrol refused", "host=%s why=\"%s\"", host,
			 bad);
		mgr_bus_reply_status(m, host, env, CN_INVALID_ARGUMENT, bad);
		return;
	}
	if (ident_issue(m, host, r->address, &id, err, sizeof(err))) {
		log_error("manager", "cannot issue a host certificate",
			  "host=%s err=\"%s\"", host, err);
		mgr_bus_reply_status(m, host, env, CN_INTERNAL,
				     "the manager cannot issue the host's "
				     "certificate; see its log");
		return;
	}
	rec.public_key = r->public_key;
	rec.created_unix_ms = mgr_unix_ms();
	rc = mgr_hostkey_save(m, host, &rec);
	if (rc) {
		mgr_bus_reply_status(m, host, env, cn_code_from_errno(rc),
				     "the manager could not store the key");
	} else {
		enrol_reply(m, host, env, &id);
		log_info("manager", "host enrolled", "host=%s key=%s", host,
			 r->public_key);
		mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
			  "host.enrolled", host, "",
			  "host %s joined with its own bus key", host);
	}
	ident_clear(&id);
}

/* The TTL of a request (0: default), or 0 when out of bounds. */
static uint32_t ttl_of(const Canopy__V1__AddHostRequest *req)
{
	uint32_t t = req->ttl_seconds ? req->ttl_seconds : MGR_JOIN_TTL_DEFAULT;

	return t >= MGR_JOIN_TTL_MIN && t <= MGR_JOIN_TTL_MAX ? t : 0;
}

/* A new one-time key for host, stored; its token into tok. */
static int join_token(struct manager *m, struct api_call *c, const char *host,
		      uint64_t expires, char *tok, size_t size)
{
	Canopy__V1__HostKey rec = CANOPY__V1__HOST_KEY__INIT;
	struct bus_keys ek;
	int rc;

	rc = bus_keys_generate(&ek);
	if (!rc)
		rc = bus_token_format(host, ek.secret_key, m->bus_public, tok,
				      size);
	if (!rc) {
		rec.public_key = ek.public_key;
		rec.expires_unix_ms = expires;
		rec.created_unix_ms = mgr_unix_ms();
		rec.created_by = (char *)c->auth.user;
		rc = mgr_hostkey_save(m, host, &rec);
	}
	OPENSSL_cleanse(&ek, sizeof(ek));
	return rc;
}

void api_add_host(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__AddHostRequest *req = (const void *)r;
	Canopy__V1__AddHostResponse resp = CANOPY__V1__ADD_HOST_RESPONSE__INIT;
	struct manager *m = arg;
	struct mgr_hostkey *e;
	char tok[BUS_TOKEN_MAX];
	uint32_t ttl = ttl_of(req);
	int rc;

	e = mgr_hostkey_of(m, req->id);
	if (!mgr_name_valid(MGR_NAME_HOST, req->id)) {
		api_fail(
			c, CN_INVALID_ARGUMENT,
			"host id must be 1..64 characters of A-Z a-z 0-9 . _ -");
		return;
	}
	if (!ttl) {
		api_fail(c, CN_INVALID_ARGUMENT, "ttl must be %d..%d seconds",
			 MGR_JOIN_TTL_MIN, MGR_JOIN_TTL_MAX);
		return;
	}
	if (e && !e->expires_ms) {
		api_fail(c, CN_ALREADY_EXISTS,
			 "host %s has joined already; 'canopy host remove %s' "
			 "first to let it join again",
			 req->id, req->id);
		return;
	}
	resp.expires_unix_ms = mgr_unix_ms() + (uint64_t)ttl * 1000;
	rc = join_token(m, c, req->id, resp.expires_unix_ms, tok, sizeof(tok));
	if (rc) {
		OPENSSL_cleanse(tok, sizeof(tok));
		mgr_fail_store(m, c, rc, "storing the join key");
		return;
	}
	resp.join_token = tok;
	resp.bus_public_key = m->bus_public;
	api_reply(c, &resp.base);
	OPENSSL_cleanse(tok, sizeof(tok));
	log_info("manager", "join token made", "host=%s ttl_s=%u replaced=%d",
		 req->id, ttl, e != NULL);
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  "host.added", req->id, "",
		  "host %s may join until its token expires in %u s", req->id,
		  ttl);
}
