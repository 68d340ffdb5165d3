/* canopy CLI: fetch a server's certificate chain with an unverified TLS
 * handshake (OpenSSL), to show and pin the cluster CA on first connect. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cli/trust.h"

/* Split "host:port" or "[v6]:port" into host and port. */
static int addr_split(const char *addr, char *host, size_t hsize, char *port,
		      size_t psize)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hl;

	if (!colon || !colon[1])
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hsize || strlen(colon + 1) >= psize)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, psize, "%s", colon + 1);
	return 0;
}

/* Connect within ms; the socket is left blocking with ms I/O timeouts. */
static int connect_to(const struct addrinfo *ai, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };
	struct pollfd p = { .events = POLLOUT };
	socklen_t len = sizeof(int);
	int fd, err = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)
		goto fail;
	p.fd = fd;
	if (poll(&p, 1, (int)ms) != 1) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
		errno = err ? err : errno;
		goto fail;
	}
	fcntl(fd, F_SETFL, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static int dial(const char *addr, unsigned ms, char *host, size_t hsize,
		char *why, size_t wsize)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char port[16];
	int fd = -EHOSTUNREACH, g;

	if (addr_split(addr, host, hsize, port, sizeof(port))) {
		snprintf(why, wsize, "'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	g = getaddrinfo(host, port, &hints, &res);
	if (g) {
		snprintf(why, wsize, "%s", gai_strerror(g));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_to(ai, ms);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(why, wsize, "%s", strerror(-fd));
	return fd;
}

/* A client context that verifies nothing (the caller checks the chain
 * against what it trusts) and speaks TLS 1.2+ with ALPN h2 as gRPC. */
static SSL *ssl_new(int fd, const char *host)
{
	static const unsigned char alpn[] = "\x02h2";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) == 0)
		ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* ssl holds its own reference */
	if (!ssl)
		return NULL;
	SSL_set_fd(ssl, fd);
	if (!trust_is_ip(host))
		SSL_set_tlsext_host_name(ssl, host);
	return ssl;
}

int cli_tls_probe(const char *addr, unsigned timeout_ms,
		  STACK_OF(X509) * *chain, char *why, size_t wsize)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	char host[CLI_ADDR_MAX];
	STACK_OF(X509) * peer;
	SSL *ssl;
	int fd, rc = -EPROTO;

	*chain = NULL;
	fd = dial(addr, timeout_ms, host, sizeof(host), why, wsize);
	if (fd < 0)
		return fd;
	ssl = ssl_new(fd, host);
	if (!ssl) {
		close(fd);
		snprintf(why, wsize, "cannot set up TLS");
		return -ENOMEM;
	}
	/* A peer that resets the connection is an error, not SIGPIPE. */
	sigaction(SIGPIPE, &ign, &old);
	if (SSL_connect(ssl) != 1) {
		unsigned long e = ERR_peek_last_error();

		snprintf(why, wsize,
			 "no TLS handshake with %s (%s); is it "
			 "canopy-managerd's API port?",
			 addr,
			 e ? ERR_reason_error_string(e) : "connection closed");
		goto out;
	}
	peer = SSL_get_peer_cert_chain(ssl);
	if (!peer || sk_X509_num(peer) < 1) {
		snprintf(why, wsize, "%s sent no certificate", addr);
		goto out;
	}
	*chain = X509_chain_up_ref(peer);
	rc = *chain ? 0 : -ENOMEM;
out:
	ERR_clear_error();
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	sigaction(SIGPIPE, &old, NULL);
	return rc;
}
