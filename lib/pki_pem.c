/* The cluster PKI: keys and certificate chains as PEM text in memory (sent to an enrolling host). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "lib/pki.h"

/* What b holds as a new NUL-terminated string. */
static int bio_text(BIO *b, char **out)
{
	char *data;
	long len = BIO_get_mem_data(b, &data);

	if (len <= 0)
		return -EIO;
	*out = malloc((size_t)len + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, data, (size_t)len);
	(*out)[len] = '\0';
	return 0;
}

int pki_key_pem(EVP_PKEY *key, char **out)
{
	BIO *b = BIO_new(BIO_s_secmem()); /* wiped when freed */
	int rc = -ENOMEM;

	*out = NULL;
	if (b) {
		rc = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
					      NULL) == 1 ?
			     bio_text(b, out) :
			     -EIO;
		BIO_free(b);
	}
	return rc;
}

int pki_certs_pem(X509 *const *certs, size_t n, char **out)
{
	BIO *b = BIO_new(BIO_s_mem());
	size_t i;
	int rc = b ? 0 : -ENOMEM;

	*out = NULL;
	for (i = 0; i < n && !rc; i++)
		if (PEM_write_bio_X509(b, certs[i]) != 1)
			rc = -EIO;
	if (!rc)
		rc = bio_text(b, out);
	BIO_free(b);
	return rc;
}
