/* canopy-managerd: the inventory index's pure counting (keys in, counts out). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "manager/index.h"

struct mgr_index_host {
	struct mgr_index_host *next;
	int64_t vms;
	char id[MGR_ID_MAX + 1];
};

/* Copy the len bytes at s into buf (size n) as a name of kind. */
static bool name_take(const char *s, size_t len, char *buf, size_t n,
		      enum mgr_name_kind kind)
{
	if (len == 0 || len >= n || memchr(s, '\0', len))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return mgr_name_valid(kind, buf);
}

/* The part of key after prefix, or NULL. */
static const char *after(const char *key, size_t len, const char *prefix,
			 size_t *rest)
{
	size_t n = strlen(prefix);

	if (len < n || memcmp(key, prefix, n) != 0)
		return NULL;
	*rest = len - n;
	return key + n;
}

static enum mgr_index_kind placement_parse(const char *p, size_t len,
					   char *host)
{
	char vm[MGR_KEY_MAX];
	const char *slash = memchr(p, '/', len);
	size_t hl;

	if (!slash)
		return MGR_INDEX_BAD;
	hl = (size_t)(slash - p);
	if (!name_take(p, hl, host, MGR_ID_MAX + 1, MGR_NAME_HOST) ||
	    !name_take(slash + 1, len - hl - 1, vm, sizeof(vm), MGR_NAME_VM))
		return MGR_INDEX_BAD;
	return MGR_INDEX_PLACEMENT;
}

enum mgr_index_kind mgr_index_key_parse(const char *key, size_t len, char *host)
{
	char name[MGR_KEY_MAX];
	const char *p;
	size_t rest;

	if ((p = after(key, len, MGR_PREFIX_PLACEMENT, &rest)))
		return placement_parse(p, rest, host);
	if ((p = after(key, len, MGR_PREFIX_HOSTS, &rest)))
		return name_take(p, rest, name, sizeof(name), MGR_NAME_HOST) ?
			       MGR_INDEX_HOST :
			       MGR_INDEX_BAD;
	if ((p = after(key, len, MGR_PREFIX_VMS, &rest)))
		return name_take(p, rest, name, sizeof(name), MGR_NAME_VM) ?
			       MGR_INDEX_VM :
			       MGR_INDEX_BAD;
	if ((p = after(key, len, MGR_PREFIX_RUNNING, &rest)))
		return name_take(p, rest, name, sizeof(name), MGR_NAME_VM) ?
			       MGR_INDEX_RUNNING :
			       MGR_INDEX_BAD;
	return MGR_INDEX_OTHER;
}

/* FNV-1a of a host id. */
static size_t hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)h;
}

int mgr_index_init(struct mgr_index *ix)
{
	memset(ix, 0, sizeof(*ix));
	ix->buckets = calloc(MGR_INDEX_BUCKETS_MIN, sizeof(*ix->buckets));
	if (!ix->buckets)
		return -ENOMEM;
	ix->n_buckets = MGR_INDEX_BUCKETS_MIN;
	return 0;
}

void mgr_index_free(struct mgr_index *ix)
{
	struct mgr_index_host *h, *next;
	size_t i;

	for (i = 0; ix->buckets && i < ix->n_buckets; i++)
		for (h = ix->buckets[i]; h; h = next) {
			next = h->next;
			free(h);
		}
	free(ix->buckets);
	memset(ix, 0, sizeof(*ix));
}

/* Double the table (best effort: a full table only gets slower). */
static void grow(struct mgr_index *ix)
{
	size_t n = ix->n_buckets * 2, i, b;
	struct mgr_index_host **nb, *h, *next;

	nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	for (i = 0; i < ix->n_buckets; i++)
		for (h = ix->buckets[i]; h; h = next) {
			next = h->next;
			b = hash(h->id) % n;
			h->next = nb[b];
			nb[b] = h;
		}
	free(ix->buckets);
	ix->buckets = nb;
	ix->n_buckets = n;
}

/* The slot that points at host's entry (or at the NULL ending its chain). */
static struct mgr_index_host **slot(const struct mgr_index *ix,
				    const char *host)
{
	struct mgr_index_host **pp = &ix->buckets[hash(host) % ix->n_buckets];

	while (*pp && strcmp((*pp)->id, host) != 0)
		pp = &(*pp)->next;
	return pp;
}

static int place(struct mgr_index *ix, const char *host, int delta)
{
	struct mgr_index_host **pp = slot(ix, host), *h = *pp;

	if (!h && delta < 0)
		return -ERANGE;
	if (!h) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return -ENOMEM;
		strcpy(h->id, host); /* parse checked the length */
		*pp = h;
		ix->n_entries++;
	}
	h->vms += delta;
	if (h->vms <= 0) { /* no entry for hosts without VMs */
		*pp = h->next;
		free(h);
		ix->n_entries--;
	} else if (ix->n_entries > ix->n_buckets) {
		grow(ix);
	}
	return 0;
}

/* Add delta to *count; -ERANGE (count kept at 0) below zero. */
static int bump(int64_t *count, int delta)
{
	if (*count + delta < 0) {
		*count = 0;
		return -ERANGE;
	}
	*count += delta;
	return 0;
}

static int add_kind(struct mgr_index *ix, enum mgr_index_kind kind,
		    const char *host, int delta)
{
	int rc;

	switch (kind) {
	case MGR_INDEX_HOST:
		return bump(&ix->hosts, delta);
	case MGR_INDEX_VM:
		return bump(&ix->vms, delta);
	case MGR_INDEX_RUNNING:
		return bump(&ix->running, delta);
	case MGR_INDEX_PLACEMENT:
		rc = place(ix, host, delta);
		if (rc == 0)
			rc = bump(&ix->placed, delta);
		return rc;
	default:
		return 0;
	}
}

int mgr_index_add(struct mgr_index *ix, const char *key, size_t len, int delta)
{
	char host[MGR_ID_MAX + 1];
	enum mgr_index_kind kind = mgr_index_key_parse(key, len, host);
	int rc;

	if (kind == MGR_INDEX_BAD) {
		ix->bad_keys++;
		log_warn("manager", "inventory index ignores a malformed key",
			 "key=\"%.*s\"", (int)CN_MIN(len, 200u), key);
		return -EINVAL;
	}
	rc = add_kind(ix, kind, host, delta);
	if (rc == -ERANGE) {
		ix->underflows++;
		log_warn("manager",
			 "inventory index: a key it never counted was deleted",
			 "key=\"%.*s\"", (int)CN_MIN(len, 200u), key);
	}
	return rc;
}

int mgr_index_apply(struct mgr_index *ix, const struct etcd_event *ev)
{
	int delta = 0, rc = 0;

	if (ev->type == ETCD_EVENT_DELETE)
		delta = -1;
	else if (ev->kv.version == 1)
		delta = 1;
	if (delta)
		rc = mgr_index_add(ix, ev->kv.key, ev->kv.key_len, delta);
	if (ev->revision > ix->rev)
		ix->rev = ev->revision;
	return rc;
}

uint32_t mgr_index_host_vms(const struct mgr_index *ix, const char *host)
{
	const struct mgr_index_host *h;

	if (!ix->buckets || !host)
		return 0;
	h = *slot(ix, host);
	return h ? (uint32_t)h->vms : 0;
}
