/* The cluster PKI: CA creation and certificate issuing with OpenSSL. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/x509v3.h>

#include "lib/err.h"
#include "lib/pki.h"

/* Certificates start this many seconds in the past (clock skew). */
#define PKI_BACKDATE_S 300
/* Bits of a random serial number (positive, under 2^159). */
#define PKI_SERIAL_BITS 127

static bool is_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1;
}

bool pki_name_valid(const char *s)
{
	size_t i, n;

	if (!s)
		return false;
	n = strnlen(s, PKI_NAME_MAX + 1);
	if (n == 0 || n > PKI_NAME_MAX)
		return false;
	if (is_ip(s))
		return true;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c == '_' || c == '*'))
			return false;
	}
	return true;
}

static EVP_PKEY *key_new(void)
{
	return EVP_EC_gen("P-256");
}

/* Add one extension given in OpenSSL's config syntax. */
static int ext_add(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex)
		return -EINVAL;
	ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return ok ? 0 : -ENOMEM;
}

/* A new certificate: version 3, random serial, validity, subject CN,
 * public key. */
static X509 *cert_base(const char *cn, unsigned days, EVP_PKEY *key)
{
	X509 *cert = X509_new();
	X509_NAME *name;
	BIGNUM *bn = BN_new();

	if (!cert || !bn)
		goto err;
	if (!X509_set_version(cert, 2) ||
	    !BN_rand(bn, PKI_SERIAL_BITS, BN_RAND_TOP_ANY,
		     BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		goto err;
	if (!X509_gmtime_adj(X509_getm_notBefore(cert), -PKI_BACKDATE_S) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400L))
		goto err;
	name = X509_get_subject_name(cert);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
					(const unsigned char *)"Canopy", -1, -1,
					0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)cn, -1, -1, 0))
		goto err;
	if (!X509_set_pubkey(cert, key))
		goto err;
	BN_free(bn);
	return cert;
err:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

int pki_ca_create(const char *name, unsigned days, struct pki_ca *ca, char *err,
		  size_t errlen)
{
	memset(ca, 0, sizeof(*ca));
	if (!pki_name_valid(name))
		return cn_errf(-EINVAL, err, errlen,
			       "cluster name '%s' must be 1..253 characters of "
			       "A-Z a-z 0-9 . - _",
			       name ? name : "");
	ca->key = key_new();
	if (!ca->key)
		return cn_errf(-ENOMEM, err, errlen, "cannot generate a key");
	ca->cert = cert_base(name, days ? days : PKI_CA_DAYS, ca->key);
	if (!ca->cert)
		goto err;
	if (!X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert)))
		goto err;
	if (ext_add(ca->cert, ca->cert, NID_basic_constraints,
		    "critical,CA:TRUE,pathlen:0") ||
	    ext_add(ca->cert, ca->cert, NID_key_usage,
		    "critical,keyCertSign,cRLSign") ||
	    ext_add(ca->cert, ca->cert, NID_subject_key_identifier, "hash"))
		goto err;
	if (!X509_sign(ca->cert, ca->key, EVP_sha256()))
		goto err;
	return 0;
err:
	pki_ca_clear(ca);
	return cn_errf(-EIO, err, errlen, "cannot build the CA certificate");
}

void pki_ca_clear(struct pki_ca *ca)
{
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	ca->key = NULL;
	ca->cert = NULL;
}

/* "DNS:a,IP:1.2.3.4" from the request's names. */
static int san_text(const struct pki_cert_req *req, char *buf, size_t size,
		    char *err, size_t errlen)
{
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	if (req->n_sans > PKI_SAN_MAX)
		return cn_errf(-EINVAL, err, errlen,
			       "more than %d subject alternative names",
			       PKI_SAN_MAX);
	for (i = 0; i < req->n_sans; i++) {
		if (!pki_name_valid(req->sans[i]))
			return cn_errf(-EINVAL, err, errlen,
				       "'%s' is not a host name or IP address",
				       req->sans[i] ? req->sans[i] : "");
		n = snprintf(buf + used, size - used, "%s%s:%s", i ? "," : "",
			     is_ip(req->sans[i]) ? "IP" : "DNS", req->sans[i]);
		if (n < 0 || (size_t)n >= size - used)
			return cn_errf(-EINVAL, err, errlen, "names too long");
		used += (size_t)n;
	}
	return 0;
}

/* The leaf's extensions: not a CA, usages, names, key identifiers. */
static int leaf_exts(X509 *cert, X509 *issuer, unsigned usage, const char *sans)
{
	const char *eku = usage == PKI_USAGE_SERVER ? "serverAuth" :
			  usage == PKI_USAGE_CLIENT ? "clientAuth" :
						      "serverAuth,clientAuth";

	if (ext_add(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
	    ext_add(cert, issuer, NID_key_usage,
		    "critical,digitalSignature,keyAgreement") ||
	    ext_add(cert, issuer, NID_ext_key_usage, eku) ||
	    ext_add(cert, issuer, NID_subject_key_identifier, "hash") ||
	    ext_add(cert, issuer, NID_authority_key_identifier, "keyid"))
		return -EIO;
	if (sans[0] && ext_add(cert, issuer, NID_subject_alt_name, sans))
		return -EIO;
	return 0;
}

int pki_cert_issue(const struct pki_ca *ca, const struct pki_cert_req *req,
		   EVP_PKEY **key, X509 **cert, char *err, size_t errlen)
{
	char sans[PKI_SAN_MAX * (PKI_NAME_MAX + 8)];
	int rc;

	*key = NULL;
	*cert = NULL;
	if (!ca->key || !ca->cert)
		return cn_errf(-EINVAL, err, errlen, "no CA to sign with");
	if (!pki_name_valid(req->cn))
		return cn_errf(
			-EINVAL, err, errlen,
			"certificate name '%s' must be 1..253 characters "
			"of A-Z a-z 0-9 . - _",
			req->cn ? req->cn : "");
	if (!req->usage ||
	    (req->usage & ~(PKI_USAGE_SERVER | PKI_USAGE_CLIENT)))
		return cn_errf(-EINVAL, err, errlen,
			       "no valid certificate usage");
	rc = san_text(req, sans, sizeof(sans), err, errlen);
	if (rc)
		return rc;
	*key = key_new();
	if (!*key)
		return cn_errf(-ENOMEM, err, errlen, "cannot generate a key");
	*cert = cert_base(req->cn, req->days ? req->days : PKI_LEAF_DAYS, *key);
	if (!*cert ||
	    !X509_set_issuer_name(*cert, X509_get_subject_name(ca->cert)) ||
	    leaf_exts(*cert, ca->cert, req->usage, sans) ||
	    !X509_sign(*cert, ca->key, EVP_sha256())) {
		X509_free(*cert);
		EVP_PKEY_free(*key);
		*cert = NULL;
		*key = NULL;
		return cn_errf(-EIO, err, errlen,
			       "cannot build the certificate for %s", req->cn);
	}
	return 0;
}
