/* canopy-managerd: the bus's CURVE keys: the manager's key file and the hosts' keys the ZAP handler admits. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lib/bus_keys.h"
#include "lib/err.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/pki.h"
#include "manager/hosts.h"
#include "manager/manager.h"

int mgr_bus_key_load(const char *state_dir, struct bus_keys *k, char *err,
		     size_t errlen)
{
	char path[4096];
	int rc;

	if (pki_path(path, sizeof(path), state_dir, "bus", ".key"))
		return cn_errf(-ENAMETOOLONG, err, errlen,
			       "--state-dir is too long");
	rc = bus_keys_read(path, false, k, err, errlen);
	if (rc != -ENOENT)
		return rc;
	rc = bus_keys_generate(k);
	if (!rc)
		rc = bus_keys_write(path, k, false, err, errlen);
	else
		cn_errf(rc, err, errlen, "cannot make the bus key: %s",
			cn_strerror(rc));
	if (!rc)
		log_warn("manager", "made a new agent bus key",
			 "file=%s public=%s hint=\"copy it to every manager "
			 "of this cluster with the rest of pki/\"",
			 path, k->public_key);
	return rc;
}

/* The index of host in m->hostkeys (kept sorted by host id, so every bus
 * message's key check is a binary search), or where it would go; *found
 * says which. */
static size_t hostkey_pos(const struct manager *m, const char *host,
			  bool *found)
{
	size_t lo = 0, hi = m->n_hostkeys;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->hostkeys[mid].host, host);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct mgr_hostkey *mgr_hostkey_of(struct manager *m, const char *host)
{
	bool found;
	size_t i = hostkey_pos(m, host, &found);

	return found ? &m->hostkeys[i] : NULL;
}

static int mirror(struct manager *m, const char *host,
		  const Canopy__V1__HostKey *rec)
{
	struct mgr_hostkey *e, *grown;
	bool found;
	size_t i;

	if (!bus_host_id_valid(host) || !bus_key_valid(rec->public_key))
		return -EINVAL;
	i = hostkey_pos(m, host, &found);
	if (!found) {
		if (m->n_hostkeys == m->cap_hostkeys) {
			size_t cap = m->cap_hostkeys ? m->cap_hostkeys * 2 : 16;

			grown = realloc(m->hostkeys, cap * sizeof(*grown));
			if (!grown)
				return -ENOMEM;
			m->hostkeys = grown;
			m->cap_hostkeys = cap;
		}
		memmove(&m->hostkeys[i + 1], &m->hostkeys[i],
			(m->n_hostkeys - i) * sizeof(*m->hostkeys));
		m->n_hostkeys++;
		snprintf(m->hostkeys[i].host, sizeof(m->hostkeys[i].host), "%s",
			 host);
	}
	e = &m->hostkeys[i];
	memcpy(e->key, rec->public_key, sizeof(e->key));
	e->expires_ms = rec->expires_unix_ms;
	return 0;
}

void mgr_hostkey_forget(struct manager *m, const char *host)
{
	bool found;
	size_t i = hostkey_pos(m, host, &found);

	if (!found)
		return;
	m->n_hostkeys--;
	memmove(&m->hostkeys[i], &m->hostkeys[i + 1],
		(m->n_hostkeys - i) * sizeof(*m->hostkeys));
}

void mgr_hostkeys_clear(struct manager *m)
{
	free(m->hostkeys);
	m->hostkeys = NULL;
	m->n_hostkeys = m->cap_hostkeys = 0;
}

static int cache_hostkey(struct manager *m, const char *host,
			 const ProtobufCMessage *msg)
{
	return mirror(m, host, (const Canopy__V1__HostKey *)msg);
}

int mgr_hostkeys_load(struct manager *m)
{
	int rc;

	mgr_hostkeys_clear(m);
	rc = mgr_load_prefix(m, MGR_PREFIX_HOSTKEYS,
			     &canopy__v1__host_key__descriptor, cache_hostkey);
	log_info("manager", "host keys loaded", "count=%zu", m->n_hostkeys);
	return rc;
}

int mgr_hostkey_save(struct manager *m, const char *host,
		     const Canopy__V1__HostKey *rec)
{
	char key[MGR_KEY_MAX];
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_HOSTKEYS, MGR_NAME_HOST,
			  host);
	if (!rc)
		rc = mgr_put_msg(m, key, &rec->base, NULL, NULL, 0);
	if (!rc)
		rc = mirror(m, host, rec);
	return rc;
}

static bool key_eq(const char *a, const char *b)
{
	return CRYPTO_memcmp(a, b, BUS_CURVE_KEY_LEN) == 0;
}

static int kind_of(const struct mgr_hostkey *e)
{
	if (!e->expires_ms)
		return BUS_KEY_HOST;
	return e->expires_ms > mgr_unix_ms() ? BUS_KEY_ENROL : -EACCES;
}

int mgr_bus_authorize(void *arg, const char *host, const char *key)
{
	struct manager *m = arg;
	struct mgr_hostkey *e;
	size_t i;

	if (!bus_key_valid(key))
		return -EACCES;
	if (host) {
		e = mgr_hostkey_of(m, host);
		return e && key_eq(e->key, key) ? kind_of(e) : -EACCES;
	}
	/* A handshake: the host is not known yet, only the key. */
	for (i = 0; i < m->n_hostkeys; i++)
		if (key_eq(m->hostkeys[i].key, key))
			return kind_of(&m->hostkeys[i]);
	return -EACCES;
}
