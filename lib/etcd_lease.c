/* etcd client leases: grant, revoke, one-shot keepalive and time-to-live. */
#include <errno.h>
#include <stdlib.h>

#include "lib/etcd_internal.h"

/* Largest TTL accepted by etcd (MaxLeaseTTL, 9e9 s) rounded down. */
#define ETCD_LEASE_TTL_MAX 1000000000

int etcd_lease_grant(struct etcd_client *c, int64_t ttl, int64_t *id,
		     int64_t *granted_ttl)
{
	Etcdserverpb__LeaseGrantRequest req =
		ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Etcdserverpb__LeaseGrantResponse *resp = NULL;
	int rc;

	etcd_clear_error(c);
	if (ttl < 1 || ttl > ETCD_LEASE_TTL_MAX) {
		etcd_set_error(c, "lease TTL must be 1..%d seconds",
			       ETCD_LEASE_TTL_MAX);
		return -EINVAL;
	}
	req.ttl = ttl;
	rc = etcd_call_unary(c, "/etcdserverpb.Lease/LeaseGrant", &req.base,
			     &etcdserverpb__lease_grant_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	if (resp->error && resp->error[0]) {
		etcd_set_error(c, "lease grant refused: %.200s", resp->error);
		rc = -EIO;
	} else if (resp->id == 0 || resp->ttl <= 0) {
		etcd_set_error(c, "lease grant: server returned no lease");
		rc = -EBADMSG;
	} else {
		*id = resp->id;
		if (granted_ttl)
			*granted_ttl = resp->ttl;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}

int etcd_lease_revoke(struct etcd_client *c, int64_t id)
{
	Etcdserverpb__LeaseRevokeRequest req =
		ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	Etcdserverpb__LeaseRevokeResponse *resp = NULL;
	int rc;

	etcd_clear_error(c);
	if (id == 0) {
		etcd_set_error(c, "lease id 0 is not a lease");
		return -EINVAL;
	}
	req.id = id;
	rc = etcd_call_unary(c, "/etcdserverpb.Lease/LeaseRevoke", &req.base,
			     &etcdserverpb__lease_revoke_response__descriptor,
			     (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int64_t *ttl)
{
	Etcdserverpb__LeaseKeepAliveRequest req =
		ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	Etcdserverpb__LeaseKeepAliveResponse *resp = NULL;
	int rc;

	etcd_clear_error(c);
	if (id == 0) {
		etcd_set_error(c, "lease id 0 is not a lease");
		return -EINVAL;
	}
	req.id = id;
	/* One request, half-close, one response: etcd's handler answers and
	 * then ends the stream with OK when it reads the half-close. */
	rc = etcd_call_unary(
		c, "/etcdserverpb.Lease/LeaseKeepAlive", &req.base,
		&etcdserverpb__lease_keep_alive_response__descriptor,
		(ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	if (resp->ttl <= 0) {
		etcd_set_error(c, "lease %lld expired or does not exist",
			       (long long)id);
		rc = -ENOENT;
	} else if (resp->id != id) {
		etcd_set_error(c, "keepalive answered for lease %lld, not %lld",
			       (long long)resp->id, (long long)id);
		rc = -EBADMSG;
	} else {
		*ttl = resp->ttl;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}

int etcd_lease_ttl(struct etcd_client *c, int64_t id, int64_t *ttl,
		   int64_t *granted)
{
	Etcdserverpb__LeaseTimeToLiveRequest req =
		ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
	Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
	int rc;

	etcd_clear_error(c);
	if (id == 0) {
		etcd_set_error(c, "lease id 0 is not a lease");
		return -EINVAL;
	}
	req.id = id;
	rc = etcd_call_unary(
		c, "/etcdserverpb.Lease/LeaseTimeToLive", &req.base,
		&etcdserverpb__lease_time_to_live_response__descriptor,
		(ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	if (resp->ttl < 0) {
		etcd_set_error(c, "lease %lld expired or does not exist",
			       (long long)id);
		rc = -ENOENT;
	} else {
		*ttl = resp->ttl;
		if (granted)
			*granted = resp->grantedttl;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return rc;
}
