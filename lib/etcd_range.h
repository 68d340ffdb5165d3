/*
 * etcd range reads between two keys (an addition to lib/etcd.h, which only
 * reads one key or a whole prefix): the building block of paged listings,
 * so that no request reads more than one page.
 *
 * Threads and errors as lib/etcd.h: one thread per client at a time; 0 or
 * a negative errno with the sentence in etcd_client_last_error().
 */
#ifndef CANOPY_LIB_ETCD_RANGE_H
#define CANOPY_LIB_ETCD_RANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "lib/etcd.h"

/* Read the keys in [key, end) in key order, at most limit (> 0) of them;
 * end NULL or "" means every key >= key. keys_only leaves values empty.
 * 0 with *out (its count is the number of keys in the whole range, its
 * more says whether the limit cut it), -EINVAL for a bad key, end or
 * limit, or a call error. Free with etcd_kvs_free(). */
CN_MUST_CHECK int etcd_kv_range_between(struct etcd_client *c, const char *key,
					const char *end, int64_t limit,
					bool keys_only, struct etcd_kvs **out);

#endif
