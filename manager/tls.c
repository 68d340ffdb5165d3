/* canopy-managerd: loads the API's TLS certificate from the state dir. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pki.h"
#include "manager/tls.h"

/* The files as certificate, key and CA, checked against each other. */
static int check_pair(const char *crt, const char *key, const char *ca,
		      char *fpr, char *err, size_t errlen)
{
	X509 *cert = NULL, *cacert = NULL;
	EVP_PKEY *pk = NULL, *capub;
	int rc;

	rc = pki_cert_read(crt, &cert, err, errlen);
	if (!rc)
		rc = pki_key_read(key, &pk, err, errlen);
	if (!rc)
		rc = pki_cert_read(ca, &cacert, err, errlen);
	if (rc)
		goto out;
	rc = -EBADMSG;
	if (X509_check_private_key(cert, pk) != 1) {
		snprintf(err, errlen, "%s does not belong to %s", key, crt);
		goto out;
	}
	capub = X509_get0_pubkey(cacert);
	if (!capub || X509_verify(cert, capub) != 1) {
		snprintf(err, errlen, "%s was not issued by the CA in %s", crt,
			 ca);
		goto out;
	}
	rc = pki_fingerprint(cacert, fpr);
out:
	X509_free(cert);
	X509_free(cacert);
	EVP_PKEY_free(pk);
	return rc;
}

int mgr_tls_load(const char *dir, struct mgr_tls *t, char *err, size_t errlen)
{
	char crt[1024], key[1024], ca[1024], why[4096] = "";
	char fpr[PKI_FPR_SIZE];
	int rc;

	memset(t, 0, sizeof(*t));
	if (pki_path(crt, sizeof(crt), dir, PKI_MANAGER_NAME, ".crt") ||
	    pki_path(key, sizeof(key), dir, PKI_MANAGER_NAME, ".key") ||
	    pki_path(ca, sizeof(ca), dir, "ca", ".crt")) {
		snprintf(err, errlen, "--state-dir '%s' is too long", dir);
		return -ENAMETOOLONG;
	}
	rc = check_pair(crt, key, ca, fpr, why, sizeof(why));
	if (!rc)
		rc = pki_file_read(crt, &t->chain_pem, why, sizeof(why));
	if (!rc)
		rc = pki_file_read(key, &t->key_pem, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen,
			 "no usable TLS certificate for the API (%s); run "
			 "'canopy cluster init --state-dir %s' on this machine "
			 "first",
			 why, dir);
		mgr_tls_clear(t);
		return rc;
	}
	snprintf(t->fingerprint, sizeof(t->fingerprint), "%s", fpr);
	return 0;
}

void mgr_tls_api(const struct mgr_tls *t, struct api_tls *out)
{
	out->cert_chain_pem = t->chain_pem;
	out->key_pem = t->key_pem;
}

void mgr_tls_clear(struct mgr_tls *t)
{
	free(t->chain_pem);
	if (t->key_pem) {
		explicit_bzero(t->key_pem, strlen(t->key_pem));
		free(t->key_pem);
	}
	t->chain_pem = NULL;
	t->key_pem = NULL;
}
