/*
 * TLS for the vMotion stream (docs/migration-protocol.md, "TLS"): the
 * credentials canopy-vmm loads at start from --tls-ca, --tls-cert and
 * --tls-key (before the jail and the seccomp filter: nothing here opens a
 * file afterwards), and the handshakes of both ends over a connected TCP
 * socket. Mutual TLS, 1.2 at least (1.3 preferred): the destination
 * (server) asks for a client certificate and both ends verify the peer's
 * chain against the one CA; the source also checks the destination's name
 * when it is given one (tls_name). Owned by one thread at a time; the
 * loaded credentials are read-only after mig_tls_load.
 */
#ifndef CANOPY_VMM_MIGRATE_TLS_H
#define CANOPY_VMM_MIGRATE_TLS_H

#include <stddef.h>

#include "lib/compiler.h"

struct mig_tls; /* credentials: one server and one client context */
struct mig_tls_conn; /* one TLS session over a socket */

/* Load and check the three PEM files: the CA, this host's certificate
 * (chain allowed: leaf first) and its private key, which must not be open
 * to other users (mode & 077 refused) and must belong to the certificate;
 * the certificate must chain to the CA now. *out is the caller's
 * (mig_tls_free). 0, or -errno with a sentence naming the file in err.
 * Start-up only. */
CN_MUST_CHECK int mig_tls_load(const char *ca, const char *cert,
			       const char *key, struct mig_tls **out, char *err,
			       size_t errlen);
void mig_tls_free(struct mig_tls *t);

/* Destination: the handshake as the server on fd (blocking, its timeouts
 * set). 0 with *out, or -errno with the reason (a plaintext peer, a
 * certificate the CA did not sign, ...) in why. */
CN_MUST_CHECK int mig_tls_accept(struct mig_tls *t, int fd,
				 struct mig_tls_conn **out, char *why,
				 size_t whylen);
/* Source: the handshake as the client; name (may be NULL: the chain only)
 * must be named by the destination's certificate (SAN, X509_check_host
 * rules). 0 with *out, or -errno with the reason in why. */
CN_MUST_CHECK int mig_tls_connect(struct mig_tls *t, int fd, const char *name,
				  struct mig_tls_conn **out, char *why,
				  size_t whylen);
/* The protocol version and cipher agreed ("TLSv1.3
 * TLS_AES_256_GCM_SHA384"), for the log. */
void mig_tls_describe(const struct mig_tls_conn *c, char *out, size_t outlen);

/* Write all n bytes (one SSL_write): 0, -ETIMEDOUT when the socket's send
 * timeout passed, -ECONNRESET or -EPIPE when the peer went away, -EIO. */
CN_MUST_CHECK int mig_tls_write(struct mig_tls_conn *c, const void *p,
				size_t n);
/* Read up to n bytes: the count (> 0), -ECONNRESET at the end of the
 * stream, -EAGAIN when the socket's receive timeout passed, -EIO. */
CN_MUST_CHECK long mig_tls_read(struct mig_tls_conn *c, void *p, size_t n);
/* Bytes waiting inside OpenSSL (decrypted, or read ahead and not yet
 * decrypted): poll(2) on the socket would not see them. */
int mig_tls_pending(const struct mig_tls_conn *c);
/* Free the session (no close_notify: the stream's own records say when
 * it ends); the socket stays the caller's. */
void mig_tls_close(struct mig_tls_conn *c);

/* Is this the start of a TLS ClientHello (a handshake record)? For the
 * plaintext destination's "the source speaks TLS" reason. */
int mig_tls_looks_like_hello(const unsigned char *p, size_t n);

#endif
