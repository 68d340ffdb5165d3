/* The agent bus's CURVE key files: generate, read and write key pairs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zmq.h>

#include "lib/bus_keys.h"
#include "lib/config.h"
#include "lib/err.h"
#include "lib/sys.h"

bool bus_key_valid(const char *k)
{
	uint8_t raw[32];

	if (!k || strnlen(k, BUS_CURVE_KEY_LEN + 1) != BUS_CURVE_KEY_LEN)
		return false;
	return zmq_z85_decode(raw, k) != NULL;
}

int bus_keys_generate(struct bus_keys *k)
{
	memset(k, 0, sizeof(*k));
	if (!zmq_has("curve"))
		return -ENOTSUP;
	if (zmq_curve_keypair(k->public_key, k->secret_key) != 0)
		return -EIO;
	return 0;
}

int bus_key_public(const char *secret, char out[BUS_CURVE_KEY_LEN + 1])
{
	if (!bus_key_valid(secret))
		return -EINVAL;
	return zmq_curve_public(out, secret) == 0 ? 0 : -EINVAL;
}

static int copy_key(const struct config *c, const char *name, char *dst)
{
	const char *v = config_get(c, name);

	if (!bus_key_valid(v))
		return -EINVAL;
	memcpy(dst, v, BUS_CURVE_KEY_LEN + 1);
	return 0;
}

int bus_keys_read(const char *path, bool want_server, struct bus_keys *k,
		  char *err, size_t errlen)
{
	static const char *const names[] = { "public", "secret", "server",
					     NULL };
	struct config *c = NULL;
	struct stat sb;
	int rc;

	memset(k, 0, sizeof(*k));
	if (stat(path, &sb) < 0)
		return cn_errf(-errno, err, errlen, "%s: %s", path,
			       strerror(errno));
	if (sb.st_mode & 077)
		return cn_errf(-EPERM, err, errlen,
			       "%s: the key file is open to other users "
			       "(mode %03o); chmod 600 it",
			       path, (unsigned)(sb.st_mode & 0777));
	rc = config_load(path, &c, err, errlen);
	if (!rc)
		rc = config_check_keys(c, names, err, errlen);
	if (rc)
		goto out;
	if (copy_key(c, "public", k->public_key) ||
	    copy_key(c, "secret", k->secret_key) ||
	    (want_server && copy_key(c, "server", k->server_key))) {
		/* Never print the values: one of them is the secret. */
		rc = cn_errf(
			-EINVAL, err, errlen,
			"%s: give 'public', 'secret'%s, each %d characters "
			"of Z85",
			path, want_server ? " and 'server'" : "",
			BUS_CURVE_KEY_LEN);
	}
out:
	config_free(c);
	if (rc)
		OPENSSL_cleanse(k, sizeof(*k));
	return rc;
}

int bus_keys_write(const char *path, const struct bus_keys *k, bool replace,
		   char *err, size_t errlen)
{
	char text[256];
	int rc, n;

	if (!replace && access(path, F_OK) == 0)
		return cn_errf(-EEXIST, err, errlen, "%s exists", path);
	n = snprintf(text, sizeof(text), "public = \"%s\"\nsecret = \"%s\"\n",
		     k->public_key, k->secret_key);
	if (k->server_key[0])
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "server = \"%s\"\n", k->server_key);
	rc = sys_write_file_atomic(path, text, (size_t)n, 0600);
	OPENSSL_cleanse(text, sizeof(text));
	if (rc)
		return cn_errf(rc, err, errlen, "%s: %s", path,
			       cn_strerror(rc));
	return 0;
}
