/* Agent bus enrolment: join tokens, and a host's one exchange with the manager under its one-time key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zmq.h>

#include "lib/bus_enrol.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/hex.h"
#include "lib/sys.h"

#define TOKEN_PREFIX "cnj1:"
#define MON_ENDPOINT "inproc://canopy-enrol-monitor"
/* Largest PEM text taken from the manager. */
#define ENROL_PEM_MAX (64 * 1024)

static int z85_to_hex(const char *z, char *hex)
{
	uint8_t raw[32];

	if (!zmq_z85_decode(raw, z))
		return -EINVAL;
	cn_hex_encode(hex, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int bus_token_format(const char *host, const char *secret, const char *server,
		     char *out, size_t size)
{
	char s[65], v[65];
	int n, rc = -EINVAL;

	if (!bus_host_id_valid(host) || !bus_key_valid(secret) ||
	    !bus_key_valid(server))
		return -EINVAL;
	if (z85_to_hex(secret, s) || z85_to_hex(server, v))
		goto out;
	n = snprintf(out, size, TOKEN_PREFIX "%s:%s:%s", host, s, v);
	rc = n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
out:
	OPENSSL_cleanse(s, sizeof(s));
	return rc;
}

/* 64 hex digits at p, then end: a key back in Z85. */
static int hex_key(const char *p, char end, char z[BUS_CURVE_KEY_LEN + 1])
{
	uint8_t raw[32];
	int rc = -EINVAL;

	if (cn_hex_decode(p, raw, sizeof(raw)) == 0 && p[64] == end &&
	    zmq_z85_encode(z, raw, sizeof(raw)))
		rc = 0;
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

int bus_token_parse(const char *token, char *host,
		    char secret[BUS_CURVE_KEY_LEN + 1],
		    char server[BUS_CURVE_KEY_LEN + 1], char *err,
		    size_t errlen)
{
	const char *p, *colon;
	size_t hl;

	if (!token || strncmp(token, TOKEN_PREFIX, 5) != 0)
		return cn_errf(-EINVAL, err, errlen,
			       "the join token does not start with '%s'; "
			       "copy the whole token 'canopy host add' printed",
			       TOKEN_PREFIX);
	p = token + 5;
	colon = strchr(p, ':');
	hl = colon ? (size_t)(colon - p) : 0;
	if (!colon || hl == 0 || hl > BUS_HOST_ID_MAX)
		goto bad;
	memcpy(host, p, hl);
	host[hl] = '\0';
	p = colon + 1;
	if (!bus_host_id_valid(host) || strnlen(p, 130) != 129 ||
	    hex_key(p, ':', secret) || hex_key(p + 65, '\0', server))
		goto bad;
	return 0;
bad:
	OPENSSL_cleanse(secret, BUS_CURVE_KEY_LEN + 1);
	return cn_errf(-EINVAL, err, errlen,
		       "the join token is damaged (expected "
		       "cnj1:HOST:64 hex digits:64 hex digits)");
}

/* The enrolment connection: a DEALER with the token's key, and a monitor
 * that tells a refused key from silence. */
struct enrol_conn {
	void *ctx;
	void *sock;
	void *mon;
	uint64_t req_id;
};

static int zerr(void)
{
	int e = zmq_errno();

	return e > 0 ? -e : -EIO;
}

static int conn_open(struct enrol_conn *c, const char *endpoint,
		     const char *host, const struct bus_keys *k)
{
	int linger = 0;
	int64_t maxmsg = BUS_WIRE_MAX;

	c->ctx = zmq_ctx_new();
	if (!c->ctx)
		return zerr();
	c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
	if (!c->sock || !c->mon)
		return zerr();
	if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(c->mon, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) ||
	    zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, host, strlen(host)) ||
	    zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, k->server_key,
			   BUS_CURVE_KEY_LEN) ||
	    zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, k->public_key,
			   BUS_CURVE_KEY_LEN) ||
	    zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, k->secret_key,
			   BUS_CURVE_KEY_LEN) ||
	    zmq_socket_monitor(c->sock, MON_ENDPOINT,
			       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
				       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) ||
	    zmq_connect(c->mon, MON_ENDPOINT) || zmq_connect(c->sock, endpoint))
		return zerr();
	return 0;
}

static void conn_close(struct enrol_conn *c)
{
	if (c->sock)
		zmq_close(c->sock);
	if (c->mon)
		zmq_close(c->mon);
	if (c->ctx)
		zmq_ctx_term(c->ctx);
}

static int send_request(struct enrol_conn *c, const char *host,
			const char *public_key, const char *address)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT, e;
	Canopy__V1__EnrolRequest r = CANOPY__V1__ENROL_REQUEST__INIT;
	uint8_t buf[1024];
	size_t len;

	r.public_key = (char *)public_key;
	r.address = (char *)(address ? address : "");
	env.body_case = CANOPY__V1__ENVELOPE__BODY_ENROL;
	env.enrol = &r;
	c->req_id = bus_req_first_id();
	bus_env_prepare(&e, &env, host, c->req_id, 0);
	len = canopy__v1__envelope__get_packed_size(&e);
	if (len > sizeof(buf))
		return -EMSGSIZE;
	canopy__v1__envelope__pack(&e, buf);
	return zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0 ? zerr() : 0;
}

/* A monitor event: the handshake failed. The sentence says why. */
static int monitor_event(struct enrol_conn *c, const char *endpoint, char *err,
			 size_t errlen)
{
	uint8_t ev[6] = { 0 };
	char addr[256];
	uint16_t id;

	if (zmq_recv(c->mon, ev, sizeof(ev), 0) < 0 ||
	    zmq_recv(c->mon, addr, sizeof(addr), 0) < 0)
		return 0;
	memcpy(&id, ev, sizeof(id));
	if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
		return cn_errf(-EACCES, err, errlen,
			       "the manager at %s refused the join token: it "
			       "expired, was used already, or a newer 'canopy "
			       "host add' replaced it",
			       endpoint);
	return cn_errf(-EPROTO, err, errlen,
		       "the CURVE handshake with %s failed: is that the "
		       "manager the token came from?",
		       endpoint);
}

/* Text fields of the reply: present, bounded, PEM. */
static int pem_ok(const char *s)
{
	return s && strnlen(s, ENROL_PEM_MAX + 1) <= ENROL_PEM_MAX &&
	       strstr(s, "-----BEGIN ") != NULL;
}

/* The manager's answer to our request: 0 with *out (free it), or -errno. */
static int take_reply(struct enrol_conn *c, Canopy__V1__Envelope **out,
		      char *err, size_t errlen)
{
	Canopy__V1__Envelope *env = NULL;
	enum bus_reject why;
	zmq_msg_t m;
	int rc;

	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return -EAGAIN;
	}
	rc = bus_decode(zmq_msg_data(&m), zmq_msg_size(&m), &env, &why);
	zmq_msg_close(&m);
	if (rc || env->reply_to != c->req_id) {
		if (env)
			canopy__v1__envelope__free_unpacked(env, NULL);
		return -EAGAIN; /* a heartbeat or noise: wait on */
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_ENROL_REPLY &&
	    pem_ok(env->enrol_reply->ca_pem) &&
	    pem_ok(env->enrol_reply->cert_pem) &&
	    pem_ok(env->enrol_reply->key_pem)) {
		*out = env;
		return 0;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    env->result->status && env->result->status->message)
		rc = cn_errf(-EACCES, err, errlen,
			     "the manager refused to enrol this host: %.300s",
			     env->result->status->message);
	else
		rc = cn_errf(-EPROTO, err, errlen,
			     "the manager's answer is not an enrolment");
	canopy__v1__envelope__free_unpacked(env, NULL);
	return rc;
}

static int exchange(struct enrol_conn *c, const char *endpoint,
		    Canopy__V1__Envelope **out, char *err, size_t errlen)
{
	uint64_t end = sys_mono_ms() + BUS_ENROL_TIMEOUT_MS;
	zmq_pollitem_t it[2] = { { c->sock, 0, ZMQ_POLLIN, 0 },
				 { c->mon, 0, ZMQ_POLLIN, 0 } };
	uint64_t now;
	int rc;

	while ((now = sys_mono_ms()) < end) {
		if (zmq_poll(it, 2, (long)(end - now)) < 0 &&
		    zmq_errno() != EINTR)
			return zerr();
		if (it[1].revents & ZMQ_POLLIN) {
			rc = monitor_event(c, endpoint, err, errlen);
			if (rc)
				return rc;
		}
		if (it[0].revents & ZMQ_POLLIN) {
			rc = take_reply(c, out, err, errlen);
			if (rc != -EAGAIN)
				return rc;
		}
	}
	return cn_errf(-ETIMEDOUT, err, errlen,
		       "no answer from the manager at %s within %d s: is it "
		       "running, and is that its bus address?",
		       endpoint, BUS_ENROL_TIMEOUT_MS / 1000);
}

static int put_file(const char *dir, const char *name, const char *text,
		    mode_t mode, char *err, size_t errlen)
{
	char path[4096];
	int rc;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return cn_errf(-ENAMETOOLONG, err, errlen, "%s: path too long",
			       dir);
	rc = sys_write_file_atomic(path, text, strlen(text), mode);
	return rc ? cn_errf(rc, err, errlen, "%s: %s", path, cn_strerror(rc)) :
		    0;
}

/* Keep what the manager gave: the TLS files, then the keys (last: their
 * presence means enrolled). */
static int save(const char *dir, const Canopy__V1__EnrolReply *r,
		const struct bus_keys *mine, char *err, size_t errlen)
{
	char path[4096];
	int rc;

	rc = put_file(dir, BUS_ENROL_CA, r->ca_pem, 0644, err, errlen);
	if (!rc)
		rc = put_file(dir, BUS_ENROL_CERT, r->cert_pem, 0644, err,
			      errlen);
	if (!rc)
		rc = put_file(dir, BUS_ENROL_KEY, r->key_pem, 0600, err,
			      errlen);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", dir, BUS_ENROL_KEYS);
	return bus_keys_write(path, mine, true, err, errlen);
}

static int dir_ready(const char *dir, char *keys, size_t size, char *err,
		     size_t errlen)
{
	if (snprintf(keys, size, "%s/%s", dir, BUS_ENROL_KEYS) >= (int)size)
		return cn_errf(-ENAMETOOLONG, err, errlen, "%s: path too long",
			       dir);
	if (access(keys, F_OK) == 0)
		return cn_errf(-EEXIST, err, errlen,
			       "this host is enrolled already (%s exists); "
			       "leave out --join, or remove the directory "
			       "to enrol again",
			       keys);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cn_errf(-errno, err, errlen, "%s: %s", dir,
			       strerror(errno));
	return 0;
}

int bus_enrol(const char *endpoint, const char *token, const char *host_id,
	      const char *address, const char *dir, char *err, size_t errlen)
{
	struct enrol_conn c = { 0 };
	Canopy__V1__Envelope *reply = NULL;
	struct bus_keys ek = { 0 }, mine;
	char host[BUS_HOST_ID_MAX + 1], keys[4096];
	int rc;

	rc = dir_ready(dir, keys, sizeof(keys), err, errlen);
	if (!rc)
		rc = bus_token_parse(token, host, ek.secret_key, ek.server_key,
				     err, errlen);
	if (rc)
		return rc;
	if (strcmp(host, host_id) != 0)
		return cn_errf(-EINVAL, err, errlen,
			       "the join token is for host %s, not %s", host,
			       host_id);
	rc = bus_key_public(ek.secret_key, ek.public_key);
	if (!rc)
		rc = bus_keys_generate(&mine);
	if (rc) {
		cn_errf(rc, err, errlen, "cannot make CURVE keys: %s",
			cn_strerror(rc));
		goto out;
	}
	memcpy(mine.server_key, ek.server_key, sizeof(mine.server_key));
	rc = conn_open(&c, endpoint, host, &ek);
	if (!rc)
		rc = send_request(&c, host, mine.public_key, address);
	if (rc) {
		cn_errf(rc, err, errlen, "cannot reach %s: %s", endpoint,
			cn_strerror(rc));
		goto out;
	}
	rc = exchange(&c, endpoint, &reply, err, errlen);
	if (!rc)
		rc = save(dir, reply->enrol_reply, &mine, err, errlen);
out:
	if (reply)
		canopy__v1__envelope__free_unpacked(reply, NULL);
	conn_close(&c);
	OPENSSL_cleanse(&ek, sizeof(ek));
	OPENSSL_cleanse(&mine, sizeof(mine));
	return rc;
}
