/* etcd client: range reads between a start and an end key (paging). */
#include "lib/etcd_range.h"
#include "lib/etcd_range_at.h"

int etcd_kv_range_between(struct etcd_client *c, const char *key,
			  const char *end, int64_t limit, bool keys_only,
			  struct etcd_kvs **out)
{
	/* Revision 0: the latest; every check and message is the same. */
	return etcd_kv_range_between_at(c, key, end, limit, keys_only, 0, out);
}
