/* canopy-agent: the CURVE key pair file for the agent bus (--curve-keys). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "host/agent/agent.h"
#include "lib/bus.h"
#include "lib/config.h"

static const char *const key_names[] = { "public", "secret", NULL };

/* A Z85 key: BUS_CURVE_KEY_LEN printable characters. */
static int key_ok(const char *k)
{
	if (!k || strlen(k) != BUS_CURVE_KEY_LEN)
		return 0;
	for (const char *p = k; *p; p++)
		if (*p <= ' ' || *p > '~')
			return 0;
	return 1;
}

int agent_curve_load(const char *path, struct agent_curve *out, char *err,
		     size_t len)
{
	struct config *c = NULL;
	struct stat sb;
	int rc;

	if (stat(path, &sb) < 0) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (sb.st_mode & 077) {
		snprintf(err, len,
			 "%s: the key file is open to other users (mode %03o); "
			 "chmod 600 it",
			 path, (unsigned)(sb.st_mode & 0777));
		return -EPERM;
	}
	rc = config_load(path, &c, err, len);
	if (rc == 0)
		rc = config_check_keys(c, key_names, err, len);
	if (rc < 0)
		goto out;
	if (!key_ok(config_get(c, "public")) ||
	    !key_ok(config_get(c, "secret"))) {
		/* Never print the values: one of them is the secret. */
		snprintf(err, len,
			 "%s: give 'public' and 'secret', each %d characters "
			 "of Z85",
			 path, BUS_CURVE_KEY_LEN);
		rc = -EINVAL;
		goto out;
	}
	snprintf(out->public_key, sizeof(out->public_key), "%s",
		 config_get(c, "public"));
	snprintf(out->secret_key, sizeof(out->secret_key), "%s",
		 config_get(c, "secret"));
out:
	config_free(c);
	return rc;
}

int agent_curve_server_key_ok(const char *k)
{
	return key_ok(k);
}
