/*
 * canopy-managerd's TLS files (manager/tls.c): the API certificate from the
 * state directory that `canopy cluster init` filled (lib/pki.h layout) and
 * the etcd client's CA, certificate and key.
 */
#ifndef CANOPY_MANAGER_TLS_H
#define CANOPY_MANAGER_TLS_H

#include <stddef.h>

#include "lib/compiler.h"
#include "manager/api.h"

/* The API's identity as read from disk (owns the PEM texts). */
struct mgr_tls {
	char *chain_pem;
	char *key_pem;
	char fingerprint[100]; /* the cluster CA's SHA-256, for the log */
};

/* Read state_dir/pki/manager.crt (chain) and manager.key, check that the
 * key belongs to the certificate and that the CA in ca.crt signed it.
 * 0, or -errno with a sentence in err telling the admin what to run. */
CN_MUST_CHECK int mgr_tls_load(const char *state_dir, struct mgr_tls *t,
			       char *err, size_t errlen);
/* The api_server_create view of t. */
void mgr_tls_api(const struct mgr_tls *t, struct api_tls *out);
void mgr_tls_clear(struct mgr_tls *t);

#endif
