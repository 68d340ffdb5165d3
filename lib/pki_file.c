/* The cluster PKI: PEM files with safe modes, paths and fingerprints. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "lib/err.h"
#include "lib/pki.h"

int pki_path(char *buf, size_t size, const char *dir, const char *stem,
	     const char *ext)
{
	int n = snprintf(buf, size, "%s/%s/%s%s", dir, PKI_SUBDIR, stem, ext);

	return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* Open path for writing with mode: exclusive unless replace (then the old
 * file is removed first, so the new one gets mode even if the old had
 * another). */
static FILE *open_new(const char *path, mode_t mode, bool replace, int *rc)
{
	FILE *f;
	int fd;

	if (replace && unlink(path) && errno != ENOENT) {
		*rc = -errno;
		return NULL;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		*rc = -errno;
		return NULL;
	}
	if (fchmod(fd, mode)) { /* the umask may have taken bits away */
		*rc = -errno;
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "w");
	if (!f) {
		*rc = -errno;
		close(fd);
	}
	return f;
}

/* Close f after a write; 0 or -EIO. */
static int close_written(FILE *f, bool ok)
{
	if (fflush(f) || fsync(fileno(f)))
		ok = false;
	if (fclose(f))
		ok = false;
	return ok ? 0 : -EIO;
}

int pki_key_write(const char *path, EVP_PKEY *key, bool replace, char *err,
		  size_t errlen)
{
	int rc = 0;
	FILE *f = open_new(path, 0600, replace, &rc);

	if (!f)
		return cn_errf(rc, err, errlen, "cannot create %s: %s", path,
			       strerror(-rc));
	rc = close_written(f, PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
						   NULL) == 1);
	if (rc) {
		unlink(path);
		return cn_errf(rc, err, errlen, "cannot write %s", path);
	}
	return 0;
}

int pki_certs_write(const char *path, X509 *const *certs, size_t n,
		    bool replace, char *err, size_t errlen)
{
	bool ok = true;
	size_t i;
	int rc = 0;
	FILE *f = open_new(path, 0644, replace, &rc);

	if (!f)
		return cn_errf(rc, err, errlen, "cannot create %s: %s", path,
			       strerror(-rc));
	for (i = 0; i < n && ok; i++)
		ok = PEM_write_X509(f, certs[i]) == 1;
	rc = close_written(f, ok);
	if (rc) {
		unlink(path);
		return cn_errf(rc, err, errlen, "cannot write %s", path);
	}
	return 0;
}

static FILE *open_read(const char *path, int *rc)
{
	FILE *f = fopen(path, "re");

	if (!f)
		*rc = -errno;
	return f;
}

static void *read_x509(FILE *f)
{
	return PEM_read_X509(f, NULL, NULL, NULL);
}

static void *read_key(FILE *f)
{
	return PEM_read_PrivateKey(f, NULL, NULL, NULL);
}

/* One PEM object of path through rd into *out; what names it. */
static int pem_read(const char *path, void *(*rd)(FILE *), const char *what,
		    void **out, char *err, size_t errlen)
{
	int rc = 0;
	FILE *f = open_read(path, &rc);

	*out = NULL;
	if (!f)
		return cn_errf(rc, err, errlen, "cannot read %s: %s", path,
			       strerror(-rc));
	*out = rd(f);
	fclose(f);
	if (!*out)
		return cn_errf(-EBADMSG, err, errlen, "%s holds no PEM %s",
			       path, what);
	return 0;
}

int pki_cert_read(const char *path, X509 **out, char *err, size_t errlen)
{
	return pem_read(path, read_x509, "certificate", (void **)out, err,
			errlen);
}

int pki_key_read(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	return pem_read(path, read_key, "private key", (void **)out, err,
			errlen);
}

int pki_file_read(const char *path, char **out, char *err, size_t errlen)
{
	int rc = 0;
	FILE *f = open_read(path, &rc);
	char *buf;
	size_t n;

	*out = NULL;
	if (!f)
		return cn_errf(rc, err, errlen, "cannot read %s: %s", path,
			       strerror(-rc));
	buf = malloc(PKI_PEM_MAX + 1);
	if (!buf) {
		fclose(f);
		return cn_errf(-ENOMEM, err, errlen, "out of memory");
	}
	n = fread(buf, 1, PKI_PEM_MAX + 1, f);
	rc = ferror(f) ? -EIO : n > PKI_PEM_MAX ? -EFBIG : 0;
	fclose(f);
	if (rc) {
		free(buf);
		return cn_errf(rc, err, errlen, "cannot read %s: %s", path,
			       rc == -EFBIG ? "larger than 256 KiB" :
					      "read error");
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

int pki_ca_load(const char *dir, struct pki_ca *ca, char *err, size_t errlen)
{
	char path[4096];
	int rc;

	memset(ca, 0, sizeof(*ca));
	rc = pki_path(path, sizeof(path), dir, "ca", ".crt");
	if (!rc)
		rc = pki_cert_read(path, &ca->cert, err, errlen);
	if (!rc)
		rc = pki_path(path, sizeof(path), dir, "ca", ".key");
	if (!rc)
		rc = pki_key_read(path, &ca->key, err, errlen);
	if (!rc && X509_check_private_key(ca->cert, ca->key) != 1)
		rc = cn_errf(-EBADMSG, err, errlen,
			     "%s does not belong to the CA certificate", path);
	if (rc)
		pki_ca_clear(ca);
	return rc;
}

int pki_fingerprint(X509 *cert, char out[PKI_FPR_SIZE])
{
	static const char digits[] = "0123456789ABCDEF";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	out[0] = '\0';
	if (!X509_digest(cert, EVP_sha256(), md, &n) || n != 32)
		return -EIO;
	for (i = 0; i < n; i++) {
		out[3 * i] = digits[md[i] >> 4];
		out[3 * i + 1] = digits[md[i] & 15];
		out[3 * i + 2] = i + 1 < n ? ':' : '\0';
	}
	return 0;
}

bool pki_fingerprint_match(const char *text, const char *fpr)
{
	const char *t = text, *f = fpr;

	if (!text || !fpr || !fpr[0])
		return false;
	if (!strncasecmp(t, "SHA256:", 7))
		t += 7;
	for (;;) {
		while (*t == ':')
			t++;
		while (*f == ':')
			f++;
		if (!*t || !*f)
			return !*t && !*f;
		if (toupper((unsigned char)*t) != toupper((unsigned char)*f))
			return false;
		t++;
		f++;
	}
}
