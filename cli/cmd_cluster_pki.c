/* canopy CLI: `cluster init` and `cluster issue-cert`, the cluster PKI on
 * the manager's machine (lib/pki.h; no server is contacted). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/cluster_pki.h"
#include "lib/bus_keys.h"
#include "lib/err.h"
#include "lib/pki.h"

/* Names every manager certificate carries besides the host name. */
static const char *const default_sans[] = { "127.0.0.1", "localhost", "::1" };

/* Create the parents of path (mode 0755, as mkdir -p). */
static void parents_make(char *path)
{
	char *p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		(void)!mkdir(path, 0755);
		*p = '/';
	}
}

/* Create dir (and dir/pki) with mode 0700, or tighten existing ones. */
static int dirs_make(struct cli *c, const char *dir)
{
	char sub[4096];
	const char *paths[2] = { dir, sub };
	size_t i;

	if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, PKI_SUBDIR) >=
	    sizeof(sub))
		return cli_fail(c, CLI_EXIT_USAGE, "--state-dir is too long");
	parents_make(sub);
	for (i = 0; i < CN_ARRAY_SIZE(paths); i++) {
		if (mkdir(paths[i], 0700) && errno != EEXIST)
			return cli_fail(c, CLI_EXIT_FAIL,
					"cannot create %s: %s", paths[i],
					strerror(errno));
		if (chmod(paths[i], 0700))
			return cli_fail(c, CLI_EXIT_FAIL,
					"cannot set mode 0700 on %s: %s",
					paths[i], strerror(errno));
	}
	return 0;
}

/* Write NAME.key and NAME.crt (leaf then CA) under dir/pki. */
static int pair_write(struct cli *c, const char *dir, const char *name,
		      EVP_PKEY *key, X509 *cert, X509 *ca, bool replace)
{
	X509 *chain[2] = { cert, ca };
	char path[4096], err[512];

	if (pki_path(path, sizeof(path), dir, name, ".key") ||
	    pki_key_write(path, key, replace, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_FAIL, "%s", err);
	if (pki_path(path, sizeof(path), dir, name, ".crt") ||
	    pki_certs_write(path, chain, ca ? 2 : 1, replace, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_FAIL, "%s", err);
	return 0;
}

/* Issue NAME's certificate from ca and write it. */
static int issue(struct cli *c, const char *dir, const struct pki_ca *ca,
		 const char *name, const struct pki_cert_req *req, bool replace)
{
	EVP_PKEY *key;
	X509 *cert;
	char err[512];
	int rc;

	if (pki_cert_issue(ca, req, &key, &cert, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	rc = pair_write(c, dir, name, key, cert, ca->cert, replace);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* The --san values plus the defaults and (first) the host name. */
static int sans_collect(struct cli *c, const struct cli_args *a,
			const char *host, const char **out, size_t *n)
{
	const char *const *given;
	unsigned ng, i;

	given = cli_args_all(a, "san", &ng);
	*n = 0;
	if (ng + 1 + CN_ARRAY_SIZE(default_sans) > PKI_SAN_MAX)
		return cli_fail(c, CLI_EXIT_USAGE, "too many --san values");
	if (host)
		out[(*n)++] = host;
	for (i = 0; i < ng; i++) {
		if (!pki_name_valid(given[i]))
			return cli_fail(c, CLI_EXIT_USAGE,
					"--san '%s' is not a host name or IP "
					"address",
					given[i]);
		out[(*n)++] = given[i];
	}
	for (i = 0; i < CN_ARRAY_SIZE(default_sans); i++)
		out[(*n)++] = default_sans[i];
	return 0;
}

static void report(struct cli *c, const char *dir, const char *what,
		   const char *fpr)
{
	struct cli_json j;

	if (c->json) {
		cli_json_init(&j, c->out);
		cli_json_begin_object(&j);
		cli_json_key(&j, "state_dir");
		cli_json_string(&j, dir);
		cli_json_key(&j, "created");
		cli_json_string(&j, what);
		cli_json_key(&j, "ca_fingerprint_sha256");
		cli_json_string(&j, fpr);
		cli_json_end_object(&j);
		cli_json_finish(&j);
		return;
	}
	fprintf(c->out,
		"%s in %s/%s\n"
		"cluster CA fingerprint (SHA-256):\n  %s\n",
		what, dir, PKI_SUBDIR, fpr);
}

/* An existing CA: refuse unless --force, naming its fingerprint. */
static int ca_exists_check(struct cli *c, const char *dir, bool force)
{
	char path[4096], fpr[PKI_FPR_SIZE] = "?", err[512];
	X509 *old;

	if (pki_path(path, sizeof(path), dir, "ca", ".key"))
		return cli_fail(c, CLI_EXIT_USAGE, "--state-dir is too long");
	if (access(path, F_OK) &&
	    pki_path(path, sizeof(path), dir, "ca", ".crt") == 0 &&
	    access(path, F_OK))
		return 0;
	if (force)
		return 0;
	if (pki_path(path, sizeof(path), dir, "ca", ".crt") == 0 &&
	    pki_cert_read(path, &old, err, sizeof(err)) == 0) {
		if (pki_fingerprint(old, fpr))
			snprintf(fpr, sizeof(fpr), "?");
		X509_free(old);
	}
	return cli_fail(
		c, cn_code_exit(CN_ALREADY_EXISTS),
		"a cluster CA already exists in %s/%s (fingerprint %s); "
		"it is kept. Run with --force to replace it: every "
		"certificate it issued and every client that trusts "
		"it must then be renewed",
		dir, PKI_SUBDIR, fpr);
}

/* The manager's agent bus key (CURVE), beside the CA so that every
 * manager of the cluster gets the same one with a copy of pki/. */
static int bus_key_make(struct cli *c, const char *dir, bool force)
{
	struct bus_keys k;
	char path[4096], err[512];
	int rc;

	if (pki_path(path, sizeof(path), dir, "bus", ".key"))
		return cli_fail(c, CLI_EXIT_USAGE, "--state-dir is too long");
	rc = bus_keys_generate(&k);
	if (!rc)
		rc = bus_keys_write(path, &k, force, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "cannot make a CURVE key: %s",
			 cn_strerror(rc));
	OPENSSL_cleanse(&k, sizeof(k));
	return rc ? cli_fail(c, CLI_EXIT_FAIL, "%s", err) : 0;
}

int cli_cluster_init(struct cli *c, const struct cli_args *a)
{
	const char *dir = cli_args_get(a, "state-dir");
	const char *name = cli_args_get(a, "name");
	const char *sans[PKI_SAN_MAX];
	bool force = cli_args_has(a, "force");
	struct pki_cert_req req = { .usage = PKI_USAGE_SERVER };
	struct pki_ca ca;
	char host[256], fpr[PKI_FPR_SIZE], err[512];
	int rc;

	if (!dir || !dir[0])
		return cli_fail(c, CLI_EXIT_USAGE,
				"cluster init needs --state-dir DIR (the "
				"manager's --state-dir)");
	if (gethostname(host, sizeof(host) - 1) || !pki_name_valid(host))
		snprintf(host, sizeof(host), "localhost");
	rc = ca_exists_check(c, dir, force);
	if (!rc)
		rc = sans_collect(c, a, host, sans, &req.n_sans);
	if (!rc)
		rc = dirs_make(c, dir);
	if (rc)
		return rc;
	if (pki_ca_create(name ? name : "canopy", 0, &ca, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
	req.cn = host;
	req.sans = sans;
	rc = pair_write(c, dir, "ca", ca.key, ca.cert, NULL, force);
	if (!rc)
		rc = issue(c, dir, &ca, PKI_MANAGER_NAME, &req, force);
	if (!rc)
		rc = bus_key_make(c, dir, force);
	if (!rc && pki_fingerprint(ca.cert, fpr))
		rc = cli_fail(c, CLI_EXIT_FAIL, "cannot hash the CA");
	if (!rc)
		report(c, dir,
		       "cluster CA, manager certificate and bus key created",
		       fpr);
	pki_ca_clear(&ca);
	return rc;
}

/* --usage server|client|both into PKI_USAGE_* bits. */
static int usage_parse(struct cli *c, const char *s, unsigned *out)
{
	if (!s || !strcmp(s, "server"))
		*out = PKI_USAGE_SERVER;
	else if (!strcmp(s, "client"))
		*out = PKI_USAGE_CLIENT;
	else if (!strcmp(s, "both"))
		*out = PKI_USAGE_SERVER | PKI_USAGE_CLIENT;
	else
		return cli_fail(c, CLI_EXIT_USAGE,
				"--usage '%s': use server, client or both", s);
	return 0;
}

int cli_cluster_issue_cert(struct cli *c, const struct cli_args *a)
{
	const char *dir = cli_args_get(a, "state-dir");
	const char *name = a->pos[0];
	const char *sans[PKI_SAN_MAX];
	struct pki_cert_req req = { .cn = name };
	struct pki_ca ca;
	char fpr[PKI_FPR_SIZE], err[512];
	int rc;

	if (!dir || !dir[0])
		return cli_fail(c, CLI_EXIT_USAGE,
				"cluster issue-cert needs --state-dir DIR");
	if (!pki_name_valid(name) || !strcmp(name, "ca") || strchr(name, '*'))
		return cli_fail(c, CLI_EXIT_USAGE,
				"certificate name '%s' must be 1..253 "
				"characters of A-Z a-z 0-9 . - _ and not 'ca'",
				name);
	rc = usage_parse(c, cli_args_get(a, "usage"), &req.usage);
	if (!rc)
		rc = sans_collect(c, a, NULL, sans, &req.n_sans);
	if (rc)
		return rc;
	req.sans = sans;
	if (pki_ca_load(dir, &ca, err, sizeof(err)))
		return cli_fail(c, CLI_EXIT_FAIL,
				"%s; run 'canopy cluster init --state-dir %s' "
				"first",
				err, dir);
	rc = issue(c, dir, &ca, name, &req, cli_args_has(a, "force"));
	if (!rc && pki_fingerprint(ca.cert, fpr))
		rc = cli_fail(c, CLI_EXIT_FAIL, "cannot hash the CA");
	if (!rc)
		report(c, dir, "certificate issued", fpr);
	pki_ca_clear(&ca);
	return rc;
}

const struct cli_optdef cli_cluster_init_opts[] = {
	{ .name = "state-dir", .has_arg = true },
	{ .name = "name", .has_arg = true },
	{ .name = "san", .has_arg = true, .repeat = true },
	{ .name = "force" },
	{ 0 },
};

const struct cli_optdef cli_cluster_issue_opts[] = {
	{ .name = "state-dir", .has_arg = true },
	{ .name = "san", .has_arg = true, .repeat = true },
	{ .name = "usage", .has_arg = true },
	{ .name = "force" },
	{ 0 },
};
