/*
 * etcd range reads between two keys at a fixed store revision (an addition
 * to lib/etcd_range.h): the building block of a consistent paged snapshot,
 * where every page must be read at the revision of the first so that the
 * pages together are the store as it was at that one revision.
 *
 * Threads and errors as lib/etcd.h: one thread per client at a time; 0 or
 * a negative errno with the sentence in etcd_client_last_error().
 */
#ifndef CANOPY_LIB_ETCD_RANGE_AT_H
#define CANOPY_LIB_ETCD_RANGE_AT_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "lib/etcd.h"

/* As etcd_kv_range_between() (keys in [key, end), at most limit > 0, end
 * NULL or "" for every key >= key), read at store revision rev (0: the
 * latest; (*out)->revision says which one was read). 0 with *out, -EINVAL
 * for a bad key, end, limit or a negative rev, -ERANGE when rev was
 * compacted, or a call error. Free with etcd_kvs_free(). */
CN_MUST_CHECK int etcd_kv_range_between_at(struct etcd_client *c,
					   const char *key, const char *end,
					   int64_t limit, bool keys_only,
					   int64_t rev, struct etcd_kvs **out);

#endif
