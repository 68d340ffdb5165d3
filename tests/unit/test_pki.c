/* Unit tests of lib/pki*.c: names, CA and leaf certificates, files, prints. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/x509v3.h>

#include "lib/pki.h"

static void test_names(void **state)
{
	char longname[PKI_NAME_MAX + 2];

	(void)state;
	assert_true(pki_name_valid("mgr-1.example.org"));
	assert_true(pki_name_valid("10.0.0.1"));
	assert_true(pki_name_valid("::1"));
	assert_true(pki_name_valid("*.lab"));
	assert_false(pki_name_valid(""));
	assert_false(pki_name_valid(NULL));
	assert_false(pki_name_valid("a b"));
	assert_false(pki_name_valid("a,DNS:evil"));
	assert_false(pki_name_valid("a/b"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(pki_name_valid(longname));
}

static void test_fingerprint_match(void **state)
{
	const char *f = "AB:CD:EF";

	(void)state;
	assert_true(pki_fingerprint_match("AB:CD:EF", f));
	assert_true(pki_fingerprint_match("abcdef", f));
	assert_true(pki_fingerprint_match("SHA256:ab:cd:ef", f));
	assert_true(pki_fingerprint_match("sha256:ABCDEF", f));
	assert_false(pki_fingerprint_match("AB:CD", f));
	assert_false(pki_fingerprint_match("AB:CD:EF:00", f));
	assert_false(pki_fingerprint_match("AB:CD:EE", f));
	assert_false(pki_fingerprint_match("", f));
	assert_false(pki_fingerprint_match(NULL, f));
	assert_false(pki_fingerprint_match("AB", ""));
}

static void test_issue_and_verify(void **state)
{
	const char *sans[] = { "node1", "192.168.1.5" };
	struct pki_cert_req req = { .cn = "node1",
				    .sans = sans,
				    .n_sans = 2,
				    .usage = PKI_USAGE_CLIENT |
					     PKI_USAGE_SERVER };
	struct pki_ca ca, other;
	char fpr[PKI_FPR_SIZE], err[256];
	EVP_PKEY *key;
	X509 *cert;

	(void)state;
	assert_int_equal(pki_ca_create("test", 0, &ca, err, sizeof(err)), 0);
	assert_int_equal(pki_ca_create("other", 0, &other, err, sizeof(err)),
			 0);
	assert_int_equal(X509_check_ca(ca.cert), 1);
	assert_int_equal(
		pki_cert_issue(&ca, &req, &key, &cert, err, sizeof(err)), 0);
	assert_int_equal(X509_verify(cert, X509_get0_pubkey(ca.cert)), 1);
	assert_int_not_equal(X509_verify(cert, X509_get0_pubkey(other.cert)),
			     1);
	assert_int_equal(X509_check_private_key(cert, key), 1);
	assert_int_equal(X509_check_ca(cert), 0);
	assert_int_equal(X509_check_host(cert, "node1", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(cert, "192.168.1.5", 0), 1);
	assert_int_not_equal(X509_check_host(cert, "node2", 0, 0, NULL), 1);
	assert_int_equal(pki_fingerprint(ca.cert, fpr), 0);
	assert_int_equal(strlen(fpr), 95);
	X509_free(cert);
	EVP_PKEY_free(key);
	/* Bad requests name the problem and give nothing. */
	sans[0] = "bad name";
	assert_int_equal(pki_cert_issue(&ca, &req, &key, &cert, err,
					sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "bad name"));
	assert_null(cert);
	sans[0] = "node1";
	req.usage = 0;
	assert_int_equal(pki_cert_issue(&ca, &req, &key, &cert, err,
					sizeof(err)),
			 -EINVAL);
	req.usage = PKI_USAGE_SERVER;
	req.cn = "";
	assert_int_equal(pki_cert_issue(&ca, &req, &key, &cert, err,
					sizeof(err)),
			 -EINVAL);
	pki_ca_clear(&other);
	assert_int_equal(pki_ca_create("a b", 0, &other, err, sizeof(err)),
			 -EINVAL);
	pki_ca_clear(&ca);
	assert_int_equal(pki_cert_issue(&ca, &req, &key, &cert, err,
					sizeof(err)),
			 -EINVAL);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/canopy-test-pki-XXXXXX", sub[64], path[128];
	struct pki_ca ca, back;
	char err[256], *pem;
	struct stat sb;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/pki", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(pki_ca_create("files", 0, &ca, err, sizeof(err)), 0);
	assert_int_equal(pki_path(path, sizeof(path), dir, "ca", ".key"), 0);
	assert_int_equal(pki_key_write(path, ca.key, false, err, sizeof(err)),
			 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(pki_key_write(path, ca.key, false, err, sizeof(err)),
			 -EEXIST);
	assert_int_equal(pki_key_write(path, ca.key, true, err, sizeof(err)),
			 0);
	assert_int_equal(pki_path(path, sizeof(path), dir, "ca", ".crt"), 0);
	assert_int_equal(pki_ca_load(dir, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(
		pki_certs_write(path, &ca.cert, 1, false, err, sizeof(err)), 0);
	assert_int_equal(pki_ca_load(dir, &back, err, sizeof(err)), 0);
	assert_int_equal(X509_cmp(back.cert, ca.cert), 0);
	pki_ca_clear(&back);
	assert_int_equal(pki_file_read(path, &pem, err, sizeof(err)), 0);
	assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
	free(pem);
	/* A key file that is not PEM. */
	assert_int_equal(pki_path(path, sizeof(path), dir, "ca", ".key"), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("garbage\n", f);
	fclose(f);
	assert_int_equal(pki_ca_load(dir, &back, err, sizeof(err)), -EBADMSG);
	assert_int_equal(pki_path(path, 8, dir, "ca", ".key"), -ENAMETOOLONG);
	pki_ca_clear(&ca);
	unlink(path);
	assert_int_equal(pki_path(path, sizeof(path), dir, "ca", ".crt"), 0);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_fingerprint_match),
		cmocka_unit_test(test_issue_and_verify),
		cmocka_unit_test(test_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
