/*
 * Enrolment on the agent bus (docs/security.md): `canopy host add` gives a
 * one-time join token; the host's agent connects with the token's
 * enrolment key, sends an EnrolRequest with a key pair it just made, and
 * gets its TLS identity from the cluster CA back. From then on it uses its
 * own key; the manager no longer accepts the enrolment key.
 *
 * A token is "cnj1:HOST:SECRET:SERVER": SECRET the enrolment secret key
 * and SERVER the manager's public bus key, each 32 bytes as 64 hex
 * digits (hex, since Z85 has ':'). It is a secret: never logged.
 *
 * Files a successful enrolment writes into a host's pki directory:
 */
#ifndef CANOPY_LIB_BUS_ENROL_H
#define CANOPY_LIB_BUS_ENROL_H

#include <stddef.h>

#include "lib/bus_keys.h"
#include "lib/compiler.h"

#define BUS_ENROL_KEYS "bus.key" /* public, secret, server (0600) */
#define BUS_ENROL_CA "ca.pem" /* the cluster CA */
#define BUS_ENROL_CERT "host.pem" /* leaf then CA */
#define BUS_ENROL_KEY "host.key" /* its key (0600) */
/* Longest token text (with the NUL). */
#define BUS_TOKEN_MAX (5 + BUS_HOST_ID_MAX + 2 + 2 * 64 + 1)
/* How long an agent waits for the manager's answer. */
#define BUS_ENROL_TIMEOUT_MS 30000

/* Make a token for host from the enrolment secret key and the server's
 * public key (both Z85). -EINVAL for a bad host id or key. */
CN_MUST_CHECK int bus_token_format(const char *host, const char *secret,
				   const char *server, char *out, size_t size);
/* Split a token: host (BUS_HOST_ID_MAX + 1) and both keys back in Z85.
 * -EINVAL (err says what is wrong, never the secret). */
CN_MUST_CHECK int bus_token_parse(const char *token, char *host,
				  char secret[BUS_CURVE_KEY_LEN + 1],
				  char server[BUS_CURVE_KEY_LEN + 1], char *err,
				  size_t errlen);

/*
 * Enrol host host_id on the bus at endpoint with token; address (may be
 * NULL) goes into the host certificate. Makes dir (0700) if need be and
 * writes the four files there; BUS_ENROL_KEYS is written last, so its
 * presence means enrolled. -EEXIST when it exists already. Blocks up to
 * BUS_ENROL_TIMEOUT_MS. 0 or -errno with a sentence in err.
 */
CN_MUST_CHECK int bus_enrol(const char *endpoint, const char *token,
			    const char *host_id, const char *address,
			    const char *dir, char *err, size_t errlen);

#endif
