/* TLS for the vMotion stream: credentials loaded at start, handshakes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "host/vmm/migrate_tls.h"

/* TLS handshake record type and the major version byte that follows. */
#define TLS_REC_HANDSHAKE 0x16
#define TLS_MAJOR 0x03
/* Read-ahead buffer: a few full records per read(2). */
#define MIG_TLS_READ_BUF (256u << 10)
/* TLS 1.3 suites in order of preference. */
#define MIG_TLS13_SUITES                                 \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"

struct mig_tls {
	SSL_CTX *server; /* --incoming */
	SSL_CTX *client; /* migrate_send */
};

struct mig_tls_conn {
	SSL *ssl;
};

/* The reason of OpenSSL's last error, or what. */
static const char *ssl_reason(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : what;
}

/* The file must be readable now (a clear errno beats OpenSSL's). */
static int check_readable(const char *opt, const char *path, char *err,
			  size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int rc = -errno;

		snprintf(err, errlen, "--%s %s: %s", opt, path, strerror(-rc));
		return rc;
	}
	close(fd);
	return 0;
}

/* The private key: a regular file open to nobody but its owner. */
static int check_key_file(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int rc = check_readable("tls-key", path, err, errlen);

	if (rc < 0)
		return rc;
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "--tls-key %s: not a regular file", path);
		return -EINVAL;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
			 "--tls-key %s: the key file is open to other users "
			 "(mode %03o); chmod 600 it",
			 path, (unsigned)(sb.st_mode & 0777));
		return -EPERM;
	}
	return 0;
}

/* Does the context's certificate chain to the CA for both ends' uses? */
static int check_chain(SSL_CTX *ctx, const char *cert, char *err, size_t errlen)
{
	static const int purposes[] = { X509_PURPOSE_SSL_SERVER,
					X509_PURPOSE_SSL_CLIENT };
	STACK_OF(X509) *chain = NULL;
	X509_STORE_CTX *sc;
	int rc = 0;

	(void)SSL_CTX_get0_chain_certs(ctx, &chain);
	for (unsigned i = 0; i < 2 && rc == 0; i++) {
		sc = X509_STORE_CTX_new();
		if (!sc || !X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx),
						SSL_CTX_get0_certificate(ctx),
						chain)) {
			X509_STORE_CTX_free(sc);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		X509_STORE_CTX_set_purpose(sc, purposes[i]);
		if (X509_verify_cert(sc) != 1) {
			int e = X509_STORE_CTX_get_error(sc);

			snprintf(err, errlen,
				 "--tls-cert %s: not valid %s under --tls-ca: "
				 "%s%s",
				 cert,
				 i ? "for a TLS client" : "for a TLS server",
				 X509_verify_cert_error_string(e),
				 e == X509_V_ERR_INVALID_PURPOSE ?
					 " (issue it with --usage both)" :
					 "");
			rc = -EINVAL;
		}
		X509_STORE_CTX_free(sc);
	}
	return rc;
}

/* What both roles share: versions, suites, verification, no resumption. */
static void ctx_settings(SSL_CTX *ctx)
{
	(void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* AES-128-GCM first: the stream is bulk data, and it encrypts about
	 * a third faster than AES-256-GCM here (docs/performance.md). */
	(void)SSL_CTX_set_ciphersuites(ctx, MIG_TLS13_SUITES);
	SSL_CTX_set_verify(
		ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Nothing may arrive unasked between records (migrate_send.c's
	 * check after the ACK): no TLS 1.3 session tickets. */
	(void)SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	/* Read several records per read(2), not a header and a body each. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, MIG_TLS_READ_BUF);
}

/* A context of one role with the CA, the certificate and the key. */
static int ctx_new(const SSL_METHOD *method, const char *ca, const char *cert,
		   const char *key, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	*out = NULL;
	if (!ctx) {
		snprintf(err, errlen, "TLS: %s", ssl_reason("out of memory"));
		return -ENOMEM;
	}
	ctx_settings(ctx);
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		snprintf(err, errlen, "--tls-ca %s: no PEM certificate (%s)",
			 ca, ssl_reason("unreadable"));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "--tls-cert %s: no PEM certificate (%s)",
			 cert, ssl_reason("unreadable"));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH) {
		snprintf(err, errlen,
			 "--tls-key %s does not belong to --tls-cert %s", key,
			 cert);
		goto fail;
	}
	if (!SSL_CTX_get0_privatekey(ctx)) {
		snprintf(err, errlen,
			 "--tls-key %s: no PEM private key for --tls-cert "
			 "(%s)",
			 key, ssl_reason("unreadable"));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen,
			 "--tls-key %s does not belong to --tls-cert %s", key,
			 cert);
		goto fail;
	}
	*out = ctx;
	return 0;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return -EINVAL;
}

int mig_tls_load(const char *ca, const char *cert, const char *key,
		 struct mig_tls **out, char *err, size_t errlen)
{
	struct mig_tls *t;
	int rc;

	*out = NULL;
	rc = check_readable("tls-ca", ca, err, errlen)		   ?:
		     check_readable("tls-cert", cert, err, errlen) ?:
		     check_key_file(key, err, errlen);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = ctx_new(TLS_server_method(), ca, cert, key, &t->server, err, errlen) ?:
		     ctx_new(TLS_client_method(), ca, cert, key, &t->client, err, errlen) ?:
		     check_chain(t->server, cert, err, errlen);
	if (rc < 0) {
		mig_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void mig_tls_free(struct mig_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->server);
	SSL_CTX_free(t->client);
	free(t);
}

/* Is OpenSSL's last error one of a peer that does not speak TLS? */
static int plaintext_peer(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       (r == SSL_R_WRONG_VERSION_NUMBER ||
		r == SSL_R_PACKET_LENGTH_TOO_LONG ||
		r == SSL_R_UNKNOWN_PROTOCOL || r == SSL_R_HTTP_REQUEST ||
		r == SSL_R_RECORD_LENGTH_MISMATCH);
}

/* Does verify error vr say the chain does not lead to our CA? */
static int foreign_ca(long vr)
{
	return vr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
	       vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	       vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
	       vr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
	       vr == X509_V_ERR_CERT_SIGNATURE_FAILURE;
}

/* Is OpenSSL's last error the peer's alert about our certificate? */
static int cert_alert(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       (r == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
		r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
		r == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
		r == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED ||
		r == SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED ||
		r == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE ||
		r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED ||
		r == SSL_R_TLSV1_ALERT_ACCESS_DENIED);
}

/* Why the handshake failed, as a sentence for the operator. */
static int handshake_error(SSL *ssl, int ret, const char *peer,
			   const char *name, char *why, size_t whylen)
{
	int sys = errno, se = SSL_get_error(ssl, ret);
	long vr = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_last_error();
	int rc = -EPROTO;

	if (vr != X509_V_OK) {
		snprintf(why, whylen,
			 "TLS: the %s's certificate was refused: %s%s%s%s",
			 peer, X509_verify_cert_error_string(vr),
			 vr == X509_V_ERR_HOSTNAME_MISMATCH ? " (expected '" :
			 foreign_ca(vr) ? " (not issued by this cluster's CA)" :
					  "",
			 vr == X509_V_ERR_HOSTNAME_MISMATCH && name ? name : "",
			 vr == X509_V_ERR_HOSTNAME_MISMATCH ? "')" : "");
		rc = -EACCES;
	} else if (e && plaintext_peer(e)) {
		snprintf(why, whylen,
			 "TLS: the %s does not speak TLS (plaintext stream: "
			 "is it started without --tls-ca/--tls-cert/"
			 "--tls-key?)",
			 peer);
		rc = -EPROTONOSUPPORT;
	} else if (e && cert_alert(e)) {
		snprintf(why, whylen,
			 "TLS: the %s refused this host's certificate (%s): "
			 "not from its cluster's CA, or not the host name it "
			 "expected",
			 peer, ssl_reason("alert"));
		rc = -EACCES;
	} else if (e) {
		snprintf(why, whylen, "TLS handshake with the %s failed: %s",
			 peer, ssl_reason("error"));
		rc = -EPROTO;
	} else if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE ||
		   (se == SSL_ERROR_SYSCALL &&
		    (sys == EAGAIN || sys == EWOULDBLOCK))) {
		/* The socket's timeout (SO_RCVTIMEO / SO_SNDTIMEO) passed. */
		snprintf(why, whylen, "TLS handshake with the %s timed out",
			 peer);
		rc = -ETIMEDOUT;
	} else {
		snprintf(why, whylen,
			 "TLS: the %s closed the connection during the "
			 "handshake",
			 peer);
		rc = -ECONNRESET;
	}
	ERR_clear_error();
	return rc;
}

/* Set up and run one handshake; role 1 = server. */
static int handshake(SSL_CTX *ctx, int fd, int server, const char *name,
		     struct mig_tls_conn **out, char *why, size_t whylen)
{
	struct mig_tls_conn *c = calloc(1, sizeof(*c));
	int ret;

	*out = NULL;
	ERR_clear_error();
	if (!c || !(c->ssl = SSL_new(ctx)) || SSL_set_fd(c->ssl, fd) != 1) {
		snprintf(why, whylen, "TLS: out of memory");
		mig_tls_close(c);
		return -ENOMEM;
	}
	if (name && (SSL_set1_host(c->ssl, name) != 1 ||
		     SSL_set_tlsext_host_name(c->ssl, name) != 1)) {
		snprintf(why, whylen, "TLS: bad destination name '%s'", name);
		mig_tls_close(c);
		return -EINVAL;
	}
	errno = 0;
	ret = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
	if (ret != 1) {
		int rc = handshake_error(c->ssl, ret,
					 server ? "source" : "destination",
					 name, why, whylen);

		mig_tls_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int mig_tls_accept(struct mig_tls *t, int fd, struct mig_tls_conn **out,
		   char *why, size_t whylen)
{
	return handshake(t->server, fd, 1, NULL, out, why, whylen);
}

int mig_tls_connect(struct mig_tls *t, int fd, const char *name,
		    struct mig_tls_conn **out, char *why, size_t whylen)
{
	return handshake(t->client, fd, 0, name, out, why, whylen);
}

void mig_tls_describe(const struct mig_tls_conn *c, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(c->ssl),
		 SSL_get_cipher_name(c->ssl));
}

/* An I/O error of SSL_read / SSL_write as -errno. */
static int io_error(SSL *ssl, int ret)
{
	int sys = errno, se = SSL_get_error(ssl, ret);

	ERR_clear_error();
	if (se == SSL_ERROR_ZERO_RETURN)
		return -ECONNRESET;
	/* A blocking socket's timeout shows as "retry". */
	if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE)
		return -EAGAIN;
	if (se == SSL_ERROR_SYSCALL && (sys == EAGAIN || sys == EWOULDBLOCK))
		return -EAGAIN;
	if (se == SSL_ERROR_SYSCALL && sys)
		return -sys;
	if (se == SSL_ERROR_SYSCALL)
		return -ECONNRESET; /* EOF without close_notify */
	return -EIO;
}

int mig_tls_write(struct mig_tls_conn *c, const void *p, size_t n)
{
	size_t done = 0;
	int rc;

	ERR_clear_error();
	errno = 0;
	/* Without SSL_MODE_ENABLE_PARTIAL_WRITE: all n bytes, or an error. */
	if (SSL_write_ex(c->ssl, p, n, &done) == 1)
		return 0;
	rc = io_error(c->ssl, 0);
	return rc == -EAGAIN ? -ETIMEDOUT : rc;
}

long mig_tls_read(struct mig_tls_conn *c, void *p, size_t n)
{
	size_t got = 0;

	ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(c->ssl, p, n, &got) == 1)
		return (long)got;
	return io_error(c->ssl, 0);
}

int mig_tls_pending(const struct mig_tls_conn *c)
{
	/* Read ahead: records may wait in OpenSSL, not yet decrypted. */
	return SSL_has_pending(c->ssl);
}

void mig_tls_close(struct mig_tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

int mig_tls_looks_like_hello(const unsigned char *p, size_t n)
{
	return n >= 2 && p[0] == TLS_REC_HANDSHAKE && p[1] == TLS_MAJOR;
}
