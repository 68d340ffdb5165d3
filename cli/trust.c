/* canopy CLI: which cluster CA to trust for a server (pinned like ssh). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cli/trust.h"
#include "lib/err.h"
#include "lib/pki.h"

bool trust_is_ip(const char *host)
{
	unsigned char b[16];

	return inet_pton(AF_INET, host, b) == 1 ||
	       inet_pton(AF_INET6, host, b) == 1;
}

int cli_trust_file_name(const char *addr, char *buf, size_t size)
{
	size_t i, n = strlen(addr);

	if (n == 0 || n + 5 > size)
		return -ENAMETOOLONG;
	for (i = 0; i < n; i++) {
		char ch = addr[i];
		bool ok = (ch >= 'a' && ch <= 'z') ||
			  (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';

		buf[i] = ok ? ch : '_';
	}
	memcpy(buf + n, ".pem", 5);
	return 0;
}

int cli_config_subdir(const char *sub, char *buf, size_t size)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/canopy/%s", xdg, sub);
	else if (home && home[0])
		n = snprintf(buf, size, "%s/.config/canopy/%s", home, sub);
	else
		return -ENOENT;
	return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

void cli_mkdir_private(char *dir)
{
	char *p;

	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		(void)!mkdir(dir, 0700);
		*p = '/';
	}
	(void)!mkdir(dir, 0700);
}

/* ~/.config/canopy/trusted (or $XDG_CONFIG_HOME/canopy/trusted). */
static int store_dir(char *buf, size_t size)
{
	return cli_config_subdir("trusted", buf, size);
}

static int store_path(const char *addr, char *buf, size_t size)
{
	char name[CLI_ADDR_MAX + 8];
	size_t used;

	if (store_dir(buf, size) ||
	    cli_trust_file_name(addr, name, sizeof(name)))
		return -ENAMETOOLONG;
	used = strlen(buf);
	if (used + 1 + strlen(name) + 1 > size)
		return -ENAMETOOLONG;
	snprintf(buf + used, size - used, "/%s", name);
	return 0;
}

/* The CA of chain: a self-signed CA certificate in it that signed the
 * leaf. NULL when the server sent none. */
static X509 *chain_ca(STACK_OF(X509) * chain)
{
	X509 *leaf = sk_X509_value(chain, 0), *x;
	int i;

	for (i = 0; i < sk_X509_num(chain); i++) {
		x = sk_X509_value(chain, i);
		if (X509_check_ca(x) && X509_check_issued(x, x) == X509_V_OK &&
		    X509_verify(leaf, X509_get0_pubkey(x)) == 1)
			return x;
	}
	return NULL;
}

static bool signed_by(X509 *leaf, X509 *ca)
{
	EVP_PKEY *pub = X509_get0_pubkey(ca);

	return pub && X509_verify(leaf, pub) == 1;
}

/* The CA in ca_file (a PEM file), as X509 and PEM text. */
static int ca_file_load(struct cli *c, const char *path, const char *from,
			X509 **ca, char **pem)
{
	char err[1024];

	if (pki_cert_read(path, ca, err, sizeof(err)) ||
	    pki_file_read(path, pem, err, sizeof(err))) {
		X509_free(*ca);
		*ca = NULL;
		return cli_fail(c, CLI_EXIT_USAGE, "%s: %s", from, err);
	}
	return 0;
}

/* Store ca as the trusted CA of addr: written aside, then renamed. */
static int store_write(struct cli *c, const char *path, X509 *ca)
{
	char tmp[1300], dir[1024];
	FILE *f;
	int fd, ok;

	if (store_dir(dir, sizeof(dir)) == 0)
		cli_mkdir_private(dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return cli_fail(c, CLI_EXIT_FAIL,
				"cannot store the CA in %s: %s", path,
				strerror(errno));
	}
	ok = PEM_write_X509(f, ca) == 1;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path)) {
		unlink(tmp);
		return cli_fail(c, CLI_EXIT_FAIL, "cannot store the CA in %s",
				path);
	}
	return 0;
}

/* Ask on the terminal; true only for "yes". */
static bool ask_yes(const char *addr, const char *fpr)
{
	char line[16];

	fprintf(stderr,
		"The cluster CA of canopy-managerd at %s is not known.\n"
		"CA fingerprint (SHA-256):\n  %s\n"
		"Compare it with the one 'canopy cluster init' printed.\n"
		"Trust this CA for %s (yes/no)? ",
		addr, fpr, addr);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return !strcmp(line, "yes");
}

/* An unknown server: trust its CA if the operator says so. */
static int first_contact(struct cli *c, const char *addr, const char *path,
			 X509 *ca, const char *fpr)
{
	if (c->trust_fpr) {
		if (!pki_fingerprint_match(c->trust_fpr, fpr))
			return cli_fail(c, CLI_EXIT_FAIL,
					"REFUSED: the cluster CA of %s has "
					"fingerprint %s, not the %s given with "
					"--trust-fingerprint; nothing was "
					"trusted",
					addr, fpr, c->trust_fpr);
	} else if (!c->interactive || !ask_yes(addr, fpr)) {
		return cli_fail(c, CLI_EXIT_FAIL,
				"canopy-managerd at %s presents a cluster CA "
				"not trusted yet (SHA-256 %s); check it "
				"against 'canopy cluster init''s output, then "
				"run again with --trust-fingerprint %s (or "
				"--ca FILE)",
				addr, fpr, fpr);
	}
	if (store_write(c, path, ca))
		return -EIO;
	fprintf(stderr, "canopy: trusted the cluster CA of %s (SHA-256 %s)\n",
		addr, fpr);
	return 0;
}

/* Check the chain against the trusted CA (given or stored), or pin it. */
static int decide(struct cli *c, const char *addr, STACK_OF(X509) * chain,
		  char **ca_pem)
{
	X509 *leaf = sk_X509_value(chain, 0), *mine = NULL, *theirs;
	char path[1200], fpr[PKI_FPR_SIZE] = "?", old[PKI_FPR_SIZE] = "?";
	const char *from = c->ca_from;
	int rc;

	theirs = chain_ca(chain);
	if (theirs && pki_fingerprint(theirs, fpr))
		snprintf(fpr, sizeof(fpr), "?");
	if (!c->ca_file && store_path(addr, path, sizeof(path)))
		return cli_fail(c, CLI_EXIT_FAIL,
				"no place to keep trusted CAs (set HOME), or "
				"give --ca FILE");
	if (!c->ca_file && access(path, F_OK)) {
		if (!theirs)
			return cli_fail(c, CLI_EXIT_FAIL,
					"%s sent no CA certificate with its "
					"own; give the cluster CA with --ca "
					"FILE",
					addr);
		rc = first_contact(c, addr, path, theirs, fpr);
		if (rc)
			return rc;
		from = path;
	}
	rc = ca_file_load(c, c->ca_file ? c->ca_file : path,
			  c->ca_file ? from : path, &mine, ca_pem);
	if (rc)
		return rc;
	if (!signed_by(leaf, mine)) {
		if (pki_fingerprint(mine, old))
			snprintf(old, sizeof(old), "?");
		rc = cli_fail(c, CLI_EXIT_FAIL,
			      "REFUSED: canopy-managerd at %s is NOT signed by "
			      "the cluster CA trusted for it (%s, SHA-256 %s); "
			      "it presents a CA with SHA-256 %s. Someone may "
			      "be intercepting the connection, or the cluster "
			      "was re-initialised: if you know it was, remove "
			      "%s and connect again",
			      addr, c->ca_file ? from : path, old, fpr,
			      c->ca_file ? from : path);
		free(*ca_pem);
		*ca_pem = NULL;
	}
	X509_free(mine);
	return rc;
}

int cli_trust_ca(struct cli *c, const char *addr, char **ca_pem,
		 struct cli_status *st)
{
	STACK_OF(X509) *chain = NULL;
	unsigned ms = CN_MIN(c->timeout_ms, CLI_PROBE_MAX_MS);
	char why[512];
	int rc;

	*ca_pem = NULL;
	rc = cli_tls_probe(addr, ms, &chain, why, sizeof(why));
	if (rc == -EPROTO || rc == -ENOMEM || rc == -EINVAL)
		return cli_fail(c, CLI_EXIT_FAIL, "%s", why);
	if (rc) {
		memset(st, 0, sizeof(*st));
		st->code = CN_UNAVAILABLE;
		st->unreachable = true;
		snprintf(st->msg, sizeof(st->msg), "%s", why);
		return rc;
	}
	rc = decide(c, addr, chain, ca_pem);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
