/* etcd client: TLS files (CA, client certificate and key) read as PEM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd_internal.h"

/* Largest TLS file read. */
#define ETCD_TLS_FILE_MAX (256 * 1024)

/* The whole file as a NUL-terminated string. 0 or -errno. */
static int file_read(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	size_t n;
	int rc;

	*out = NULL;
	if (!f)
		return -errno;
	*out = malloc(ETCD_TLS_FILE_MAX + 1);
	if (!*out) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(*out, 1, ETCD_TLS_FILE_MAX + 1, f);
	rc = ferror(f) ? -EIO : n > ETCD_TLS_FILE_MAX ? -EFBIG : 0;
	fclose(f);
	if (rc) {
		free(*out);
		*out = NULL;
		return rc;
	}
	(*out)[n] = '\0';
	return 0;
}

/* Read one file; -errno with a sentence naming which one. */
static int read_one(const char *path, char **out, const char *what_missing,
		    const char *what_bad, const char **why)
{
	int rc = file_read(path, out);

	if (rc == -ENOMEM)
		*why = "out of memory";
	else if (rc)
		*why = what_missing;
	else if (!strstr(*out, "-----BEGIN ")) {
		*why = what_bad;
		rc = -EBADMSG;
	}
	return rc;
}

int etcd_tls_load(struct etcd_tls *t, const struct etcd_options *opt,
		  const char **why)
{
	int rc;

	memset(t, 0, sizeof(*t));
	if (!opt || (!opt->ca_file && !opt->cert_file && !opt->key_file))
		return 0;
	if (!opt->ca_file) {
		*why = "a client certificate needs the etcd CA too (the CA "
		       "file turns TLS on)";
		return -EINVAL;
	}
	if (!opt->cert_file != !opt->key_file) {
		*why = "give both the etcd client certificate and its key, "
		       "or neither";
		return -EINVAL;
	}
	rc = read_one(opt->ca_file, &t->ca, "cannot read the etcd CA file",
		      "the etcd CA file is not PEM", why);
	if (!rc && opt->cert_file)
		rc = read_one(opt->cert_file, &t->cert,
			      "cannot read the etcd client certificate file",
			      "the etcd client certificate file is not PEM",
			      why);
	if (!rc && opt->key_file)
		rc = read_one(opt->key_file, &t->key,
			      "cannot read the etcd client key file",
			      "the etcd client key file is not PEM", why);
	if (rc)
		etcd_tls_clear(t);
	return rc;
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int etcd_tls_copy(struct etcd_tls *dst, const struct etcd_tls *src)
{
	if (dup_opt(&dst->ca, src->ca) || dup_opt(&dst->cert, src->cert) ||
	    dup_opt(&dst->key, src->key)) {
		etcd_tls_clear(dst);
		return -ENOMEM;
	}
	return 0;
}

void etcd_tls_clear(struct etcd_tls *t)
{
	free(t->ca);
	free(t->cert);
	if (t->key) {
		explicit_bzero(t->key, strlen(t->key));
		free(t->key);
	}
	memset(t, 0, sizeof(*t));
}
