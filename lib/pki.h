/*
 * The cluster PKI on OpenSSL's C API: a cluster CA (EC P-256, 10 years),
 * certificates it issues for servers and clients (the manager's API
 * certificate, etcd's server and client certificates, and later host
 * certificates for the agent bus and migration streams: one function,
 * pki_cert_issue, for all of them), PEM files with safe modes, and
 * SHA-256 fingerprints as operators compare them ("AB:CD:..." as
 * `openssl x509 -noout -fingerprint -sha256` prints).
 *
 * Layout of a manager's state directory (mode 0700):
 *   DIR/pki/            0700
 *   DIR/pki/ca.crt      the cluster CA certificate (0644)
 *   DIR/pki/ca.key      its private key (0600, never leaves this directory)
 *   DIR/pki/NAME.crt    a certificate chain: leaf then the CA (0644)
 *   DIR/pki/NAME.key    its private key (0600)
 * "manager" is the API server's NAME.
 *
 * Every function returns 0 or a negative errno and, where it takes err,
 * leaves a sentence there. Thread-safe (no shared state of its own).
 */
#ifndef CANOPY_LIB_PKI_H
#define CANOPY_LIB_PKI_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/compiler.h"

/* Sub-directory of a state directory holding the PKI files. */
#define PKI_SUBDIR "pki"
/* Name (file stem) of the manager's API server certificate. */
#define PKI_MANAGER_NAME "manager"
/* Lifetime of the cluster CA in days (10 years). */
#define PKI_CA_DAYS 3650
/* Lifetime of an issued certificate in days (about 2 years). */
#define PKI_LEAF_DAYS 730
/* Most subject alternative names on one certificate. */
#define PKI_SAN_MAX 32
/* Longest subject alternative name or common name. */
#define PKI_NAME_MAX 253
/* Size of a fingerprint text: 32 bytes as "AB:" triples, with the NUL. */
#define PKI_FPR_SIZE (32 * 3)
/* Largest PEM file read. */
#define PKI_PEM_MAX (256 * 1024)

/* What an issued certificate may be used for (bits). */
#define PKI_USAGE_SERVER 1u /* TLS server (extendedKeyUsage serverAuth) */
#define PKI_USAGE_CLIENT 2u /* TLS client (clientAuth) */

/* A CA: key and self-signed certificate, owned by the struct. */
struct pki_ca {
	EVP_PKEY *key;
	X509 *cert;
};

/* What to issue. sans are host names or IP addresses (v4 or v6): each
 * becomes a DNS or IP subject alternative name. days 0 means
 * PKI_LEAF_DAYS. */
struct pki_cert_req {
	const char *cn;
	const char *const *sans;
	size_t n_sans;
	unsigned usage; /* PKI_USAGE_* bits, at least one */
	unsigned days;
};

/* Create a new CA named name (its subject CN) valid for days (0:
 * PKI_CA_DAYS). 0, -EINVAL (bad name) or -ENOMEM / -EIO. */
CN_MUST_CHECK int pki_ca_create(const char *name, unsigned days,
				struct pki_ca *ca, char *err, size_t errlen);
/* Free the CA's key and certificate (the struct itself is the caller's). */
void pki_ca_clear(struct pki_ca *ca);

/* Issue a new key pair and a certificate signed by ca. *key and *cert are
 * the caller's (EVP_PKEY_free, X509_free). -EINVAL names the bad field. */
CN_MUST_CHECK int pki_cert_issue(const struct pki_ca *ca,
				 const struct pki_cert_req *req, EVP_PKEY **key,
				 X509 **cert, char *err, size_t errlen);

/* Is s a name this PKI puts in a certificate (1..PKI_NAME_MAX characters
 * of A-Z a-z 0-9 . - _ *, or an IP address)? */
bool pki_name_valid(const char *s);

/* Write key to path as PKCS#8 PEM with mode 0600, or the certificates
 * (leaf first) with mode 0644. An existing file is an error (-EEXIST)
 * unless replace is set. */
CN_MUST_CHECK int pki_key_write(const char *path, EVP_PKEY *key, bool replace,
				char *err, size_t errlen);
CN_MUST_CHECK int pki_certs_write(const char *path, X509 *const *certs,
				  size_t n, bool replace, char *err,
				  size_t errlen);
/* The same as PEM text in memory (a new string: free it; the caller
 * wipes a key's text with OPENSSL_cleanse first). -ENOMEM or -EIO. */
CN_MUST_CHECK int pki_key_pem(EVP_PKEY *key, char **out);
CN_MUST_CHECK int pki_certs_pem(X509 *const *certs, size_t n, char **out);
/* Read the first certificate of a PEM file, or the key. -ENOENT when the
 * file is missing, -EBADMSG when it holds no certificate / key. */
CN_MUST_CHECK int pki_cert_read(const char *path, X509 **out, char *err,
				size_t errlen);
CN_MUST_CHECK int pki_key_read(const char *path, EVP_PKEY **out, char *err,
			       size_t errlen);
/* Read a whole (PEM) file of at most PKI_PEM_MAX bytes into a new
 * NUL-terminated string (free it). -ENOENT, -EFBIG, -ENOMEM or -errno. */
CN_MUST_CHECK int pki_file_read(const char *path, char **out, char *err,
				size_t errlen);
/* Load dir/pki/ca.crt and ca.key. */
CN_MUST_CHECK int pki_ca_load(const char *dir, struct pki_ca *ca, char *err,
			      size_t errlen);

/* The SHA-256 fingerprint of cert's DER encoding, "AB:CD:...". */
CN_MUST_CHECK int pki_fingerprint(X509 *cert, char out[PKI_FPR_SIZE]);
/* Does text name fingerprint fpr? Accepts an optional "SHA256:" prefix,
 * either case, with or without the colons. */
bool pki_fingerprint_match(const char *text, const char *fpr);

/* Path of a PKI file: dir/pki/stem.ext into buf. -ENAMETOOLONG. */
CN_MUST_CHECK int pki_path(char *buf, size_t size, const char *dir,
			   const char *stem, const char *ext);

#endif
