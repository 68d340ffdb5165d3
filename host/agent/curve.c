/* canopy-agent: the CURVE keys of the agent bus: given keys, or the host's own from enrolment (--pki-dir, --join). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "host/agent/agent.h"
#include "lib/bus_enrol.h"
#include "lib/bus_keys.h"
#include "lib/log.h"

/* Enrol with the one-time token, then keep the host's own keys. */
static int enrol(struct agent *ag, char *msg, size_t len)
{
	int rc;

	log_info("agent", "enrolling with the manager", "manager=%s dir=%s",
		 ag->opts.manager, ag->opts.pki_dir);
	rc = bus_enrol(ag->opts.manager, ag->opts.join_token, ag->opts.host_id,
		       ag->opts.address, ag->opts.pki_dir, msg, len);
	if (!rc)
		log_info("agent",
			 "enrolled: this host has its own bus key "
			 "and certificate",
			 "dir=%s", ag->opts.pki_dir);
	return rc;
}

static int from_pki_dir(struct agent *ag, char *msg, size_t len)
{
	char path[AGENT_PATH_MAX];
	int rc;

	if (ag->opts.join_token) {
		rc = enrol(ag, msg, len);
		if (rc)
			return rc;
	}
	if (snprintf(path, sizeof(path), "%s/%s", ag->opts.pki_dir,
		     BUS_ENROL_KEYS) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	rc = bus_keys_read(path, true, &ag->curve, msg, len);
	if (rc == -ENOENT)
		snprintf(msg, len,
			 "%s does not exist: this host has not joined; run "
			 "'canopy host add %s' and start the agent once with "
			 "--join TOKEN",
			 path, ag->opts.host_id);
	return rc;
}

int agent_curve_setup(struct agent *ag, struct bus_options *bo, char *msg,
		      size_t len)
{
	int rc;

	if (ag->opts.curve_keys) {
		rc = bus_keys_read(ag->opts.curve_keys, false, &ag->curve, msg,
				   len);
		if (rc)
			return rc;
		snprintf(ag->curve.server_key, sizeof(ag->curve.server_key),
			 "%s", ag->opts.curve_server_key);
	} else if (ag->opts.pki_dir) {
		rc = from_pki_dir(ag, msg, len);
		if (rc)
			return rc;
	} else {
		log_warn("agent", "the agent bus is not encrypted",
			 "hint=\"give --pki-dir DIR (and --join TOKEN from "
			 "'canopy host add' once); managers refuse "
			 "unencrypted agents\"");
		return 0;
	}
	bo->curve_public_key = ag->curve.public_key;
	bo->curve_secret_key = ag->curve.secret_key;
	bo->curve_server_key = ag->curve.server_key;
	return 0;
}
