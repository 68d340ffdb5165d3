/*
 * The CLI's trust in a cluster CA (trust.c) and the TLS probe it uses
 * (tls_probe.c). Before the first call to a server the CLI fetches the
 * server's chain without verifying it, finds the CA that signed the
 * server's certificate and checks it against, in order: --ca FILE or
 * CANOPY_CA (no store), the CA stored for that server in
 * ~/.config/canopy/trusted/SERVER.pem (0600), or, for an unknown server,
 * --trust-fingerprint FPR or the operator's "yes" on a terminal (the
 * CA is then stored). A different CA is refused loudly. The gRPC channel
 * then verifies the server against that CA alone (chain and host name):
 * the probe only decides which CA to trust, it never replaces
 * verification.
 */
#ifndef CANOPY_CLI_TRUST_H
#define CANOPY_CLI_TRUST_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "cli/cli.h"
#include "lib/compiler.h"

/* Longest time the probe waits for the server. */
#define CLI_PROBE_MAX_MS 10000

/* The PEM of the CA to verify server addr (c->addrs[i]) with, in *ca_pem
 * (free it). 0; -ECONNREFUSED (or another connect errno) when the server
 * cannot be reached, with st filled as an unreachable UNAVAILABLE so the
 * caller can try the next server; other -errno after cli_fail (untrusted,
 * changed or unusable CA). */
CN_MUST_CHECK int cli_trust_ca(struct cli *c, const char *addr, char **ca_pem,
			       struct cli_status *st);

/* Fetch addr's certificate chain (leaf first) over TLS 1.2+ without
 * verification, within timeout_ms. 0 with *chain (sk_X509_pop_free(,
 * X509_free)); -errno with a sentence in why: a connect errno when
 * nothing answered, -EPROTO when the TLS handshake failed. */
CN_MUST_CHECK int cli_tls_probe(const char *addr, unsigned timeout_ms,
				STACK_OF(X509) * *chain, char *why,
				size_t wsize);

/* Is host an IPv4 or IPv6 address (no SNI for those)? */
bool trust_is_ip(const char *host);

/* The file name trust.c stores addr's CA under: addr with every character
 * other than A-Z a-z 0-9 . - replaced by '_', plus ".pem". */
CN_MUST_CHECK int cli_trust_file_name(const char *addr, char *buf, size_t size);

/* ~/.config/canopy/SUB (or $XDG_CONFIG_HOME/canopy/SUB) into buf. 0,
 * -ENOENT (neither variable set) or -ENAMETOOLONG. */
CN_MUST_CHECK int cli_config_subdir(const char *sub, char *buf, size_t size);

/* mkdir -p dir; what it creates is private (0700). Failures show when the
 * caller writes into it. dir is restored before return. */
void cli_mkdir_private(char *dir);

#endif
