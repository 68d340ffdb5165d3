/*
 * canopy-managerd: paged reads for the list calls: one page of keys under
 * a prefix from a page token, and many keys in one round trip. Loop
 * thread.
 */
#ifndef CANOPY_MANAGER_LIST_H
#define CANOPY_MANAGER_LIST_H

#include <stddef.h>

#include "lib/etcd.h"
#include "manager/manager.h"

/* One page: the kvs of up to page keys under prefix starting at the name
 * in token ("" for the first page); use the first *n of (*out)->kvs (it
 * may hold one more); next (size MGR_KEY_MAX) gets the
 * token of the next page or "". 0, -EINVAL (token is not a valid name of
 * kind) or an etcd error. */
CN_MUST_CHECK int mgr_list_page(struct manager *m, const char *prefix,
				enum mgr_name_kind kind, const char *token,
				size_t page, bool keys_only,
				struct etcd_kvs **out, size_t *n, char *next);
/* Read keys prefix+names[i] (n of them) and unpack each as desc into
 * out[i] (NULL when absent or undecodable). 0 or an etcd error. */
CN_MUST_CHECK int mgr_get_many(struct manager *m, const char *prefix,
			       const char *const *names, size_t n,
			       const ProtobufCMessageDescriptor *desc,
			       ProtobufCMessage **out);
/* Number of keys under prefix. 0 or an etcd error. */
CN_MUST_CHECK int mgr_count(struct manager *m, const char *prefix,
			    int64_t *count);
/* Answer a bad page token. */
void mgr_fail_token(struct api_call *c);

#endif
