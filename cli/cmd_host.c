/* canopy CLI: `cluster status`, `host list|show|add|remove`, `datastore list`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cluster_pki.h"
#include "cli/pbjson.h"

#define M_GET_CLUSTER "/canopy.v1.ClusterService/GetCluster"
#define M_LIST_HOSTS "/canopy.v1.HostService/ListHosts"
#define M_GET_HOST "/canopy.v1.HostService/GetHost"
#define M_REMOVE_HOST "/canopy.v1.HostService/RemoveHost"
#define M_ADD_HOST "/canopy.v1.HostService/AddHost"
#define M_LIST_DATASTORES "/canopy.v1.DatastoreService/ListDatastores"

static int cluster_status(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__GetClusterRequest req =
		CANOPY__V1__GET_CLUSTER_REQUEST__INIT;
	Canopy__V1__Cluster *cl;
	char hosts[64], vms[64], leader[CLI_SERVER_MAX * 2];
	int rc;

	rc = cli_call(c, M_GET_CLUSTER, &req.base,
		      &canopy__v1__cluster__descriptor,
		      (ProtobufCMessage **)&cl);
	if (rc)
		return rc;
	if (c->json) {
		cli_print_json(c, &cl->base);
	} else {
		const char *keys[] = { "Name", "Version", "Leader", "Hosts",
				       "VMs" };
		const char *vals[] = { cl->name, cl->version, leader, hosts,
				       vms };

		snprintf(leader, sizeof(leader), "%s%s%s%s",
			 cl->leader[0] ? cl->leader : "-",
			 cl->leader_address[0] ? " (" : "", cl->leader_address,
			 cl->leader_address[0] ? ")" : "");
		snprintf(hosts, sizeof(hosts), "%u (%u connected)", cl->hosts,
			 cl->hosts_connected);
		snprintf(vms, sizeof(vms), "%u (%u running)", cl->vms,
			 cl->vms_running);
		cli_kv_print(c->out, CN_ARRAY_SIZE(keys), keys, vals);
	}
	protobuf_c_message_free_unpacked(&cl->base, NULL);
	return 0;
}

static void host_memory(char *buf, size_t size, const Canopy__V1__Host *h)
{
	char used[32], total[32];

	cli_fmt_mib(used, sizeof(used), h->memory_used_mib);
	cli_fmt_mib(total, sizeof(total), h->memory_mib);
	snprintf(buf, size, "%s / %s", used, total);
}

static int host_row(struct cli_table *t, const ProtobufCMessage *m,
		    uint64_t now)
{
	const Canopy__V1__Host *h = (const Canopy__V1__Host *)m;
	char state[32], cpus[16], mem[80], vms[16], seen[32];
	const char *row[] = { h->id, h->hostname, state,      cpus,
			      mem,   vms,	  h->address, seen };

	cli_enum_text(state, sizeof(state), &canopy__v1__host_state__descriptor,
		      h->state, "HOST_STATE_");
	snprintf(cpus, sizeof(cpus), "%u", h->cpus);
	host_memory(mem, sizeof(mem), h);
	snprintf(vms, sizeof(vms), "%u", h->vms);
	cli_fmt_age(seen, sizeof(seen), h->last_seen_unix_ms, now);
	return cli_table_add(t, row);
}

static int host_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "ID",      "HOSTNAME", "STATE",
					   "CPUS",    "MEMORY",	  "VMS",
					   "ADDRESS", "LAST SEEN" };
	static const struct cli_list l = {
		.method = M_LIST_HOSTS,
		.resp_desc = &canopy__v1__list_hosts_response__descriptor,
		.field = "hosts",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = host_row,
	};
	Canopy__V1__ListHostsRequest req = CANOPY__V1__LIST_HOSTS_REQUEST__INIT;

	return cli_list_run(c, &l, &req.base);
}

static void host_print(struct cli *c, const ProtobufCMessage *m)
{
	const Canopy__V1__Host *h = (const Canopy__V1__Host *)m;
	char state[32], cpus[16], mem[80], vms[16], seen[32], ds[512];
	char feats[128];
	size_t fo = 0;
	const char *keys[] = { "ID",	       "Hostname", "State",
			       "Address",      "Version",  "CPUs",
			       "CPU features", "Memory",   "VMs",
			       "Datastores",   "Last seen" };
	const char *vals[] = { h->id,	   h->hostname, state, h->address,
			       h->version, cpus,	feats, mem,
			       vms,	   ds,		seen };
	size_t i, o = 0;

	cli_enum_text(state, sizeof(state), &canopy__v1__host_state__descriptor,
		      h->state, "HOST_STATE_");
	snprintf(cpus, sizeof(cpus), "%u", h->cpus);
	/* The registers migration admission compares (docs/
	 * migration-protocol.md, "CPU features"), in their order. */
	snprintf(feats, sizeof(feats), "-");
	for (i = 0; i < h->n_cpu_features && fo + 10 < sizeof(feats); i++)
		fo += (size_t)snprintf(feats + fo, sizeof(feats) - fo, "%s%08x",
				       i ? " " : "", h->cpu_features[i]);
	host_memory(mem, sizeof(mem), h);
	snprintf(vms, sizeof(vms), "%u", h->vms);
	cli_fmt_age(seen, sizeof(seen), h->last_seen_unix_ms, cli_now_ms());
	ds[0] = '\0';
	for (i = 0; i < h->n_datastores && o < sizeof(ds); i++)
		o += (size_t)snprintf(ds + o, sizeof(ds) - o, "%s%s",
				      i ? ", " : "", h->datastores[i]);
	if (!h->n_datastores)
		snprintf(ds, sizeof(ds), "-");
	cli_kv_print(c->out, CN_ARRAY_SIZE(keys), keys, vals);
}

static int host_show(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__GetHostRequest req = CANOPY__V1__GET_HOST_REQUEST__INIT;

	req.id = (char *)a->pos[0];
	return cli_show_run(c, M_GET_HOST, &req.base,
			    &canopy__v1__host__descriptor, host_print);
}

static int host_remove(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__RemoveHostRequest req =
		CANOPY__V1__REMOVE_HOST_REQUEST__INIT;
	ProtobufCMessage *resp;
	struct cli_json j;
	int rc;

	req.id = (char *)a->pos[0];
	req.force = cli_args_has(a, "force");
	rc = cli_call(c, M_REMOVE_HOST, &req.base,
		      &canopy__v1__remove_host_response__descriptor, &resp);
	if (rc)
		return rc;
	protobuf_c_message_free_unpacked(resp, NULL);
	if (c->json) {
		cli_json_init(&j, c->out);
		cli_json_begin_object(&j);
		cli_json_key(&j, "id");
		cli_json_string(&j, req.id);
		cli_json_key(&j, "removed");
		cli_json_bool(&j, true);
		cli_json_end_object(&j);
		cli_json_finish(&j);
	} else {
		char id[CLI_CELL_MAX * 4];

		cli_text_clean(id, sizeof(id), req.id, CLI_CELL_MAX);
		fprintf(c->out, "host %s removed\n", id);
	}
	return 0;
}

static void add_print(struct cli *c, const char *id,
		      const Canopy__V1__AddHostResponse *r)
{
	struct cli_json j;
	char until[64];
	time_t t = (time_t)(r->expires_unix_ms / 1000);
	struct tm tm;

	if (c->json) {
		cli_json_init(&j, c->out);
		cli_json_begin_object(&j);
		cli_json_key(&j, "id");
		cli_json_string(&j, id);
		cli_json_key(&j, "join_token");
		cli_json_string(&j, r->join_token);
		cli_json_key(&j, "expires_unix_ms");
		cli_json_uint(&j, r->expires_unix_ms);
		cli_json_key(&j, "bus_public_key");
		cli_json_string(&j, r->bus_public_key);
		cli_json_end_object(&j);
		cli_json_finish(&j);
		return;
	}
	if (!gmtime_r(&t, &tm) ||
	    !strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(until, sizeof(until), "?");
	fprintf(c->out,
		"host %s may join until %s. On the host, run once:\n\n"
		"  canopy-agent --host-id %s --pki-dir DIR --join %s "
		"--manager tcp://MANAGER:PORT ...\n\n"
		"The token works once and is shown only now; it holds a "
		"secret.\n"
		"Manager bus key: %s\n",
		id, until, id, r->join_token, r->bus_public_key);
}

static int host_add(struct cli *c, const struct cli_args *a)
{
	Canopy__V1__AddHostRequest req = CANOPY__V1__ADD_HOST_REQUEST__INIT;
	const char *ttl = cli_args_get(a, "ttl");
	Canopy__V1__AddHostResponse *resp;
	char err[256];
	uint64_t v;
	int rc;

	req.id = (char *)a->pos[0];
	if (ttl) {
		if (cli_parse_uint("--ttl", ttl, 60, 604800, &v, err,
				   sizeof(err)))
			return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
		req.ttl_seconds = (uint32_t)v;
	}
	rc = cli_call(c, M_ADD_HOST, &req.base,
		      &canopy__v1__add_host_response__descriptor,
		      (ProtobufCMessage **)&resp);
	if (rc)
		return rc;
	add_print(c, req.id, resp);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static const struct cli_optdef add_opts[] = {
	{ .name = "ttl", .has_arg = true },
	{ 0 },
};
static const struct cli_optdef remove_opts[] = {
	{ .name = "force" },
	{ 0 },
};

const struct cli_cmd cli_cluster_cmds[] = {
	{ .object = "cluster",
	  .verb = "status",
	  .args = "",
	  .summary = "Show the cluster: leader manager, hosts and VMs.",
	  .run = cluster_status },
	{ .object = "cluster",
	  .verb = "init",
	  .args = "--state-dir DIR [--name N] [--san NAME|IP ...] [--force]",
	  .summary = "Create the cluster CA and the manager's TLS certificate "
		     "in DIR/pki (run on the manager's machine).",
	  .help = "  --state-dir DIR     the manager's state directory "
		  "(canopy-managerd\n"
		  "                      --state-dir); created with mode "
		  "0700\n"
		  "  --name N            the CA's name (default canopy)\n"
		  "  --san NAME|IP       another name or address clients use "
		  "for the\n"
		  "                      manager (repeatable; the host name, "
		  "localhost,\n"
		  "                      127.0.0.1 and ::1 are always in)\n"
		  "  --force             replace an existing CA (everything it "
		  "issued\n"
		  "                      must be renewed)\n",
	  .opts = cli_cluster_init_opts,
	  .run = cli_cluster_init },
	{ .object = "cluster",
	  .verb = "issue-cert",
	  .args = "NAME --state-dir DIR [--usage server|client|both] "
		  "[--san NAME|IP ...] [--force]",
	  .summary = "Issue DIR/pki/NAME.crt and NAME.key from the cluster CA "
		     "(e.g. for etcd).",
	  .help = "  --state-dir DIR     where 'cluster init' put the CA\n"
		  "  --usage U           server (default), client or both\n"
		  "  --san NAME|IP       a name in the certificate "
		  "(repeatable; localhost,\n"
		  "                      127.0.0.1 and ::1 are always in)\n"
		  "  --force             replace an existing NAME.crt/key\n",
	  .opts = cli_cluster_issue_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = cli_cluster_issue_cert },
	{ 0 },
};

const struct cli_cmd cli_host_cmds[] = {
	{ .object = "host",
	  .verb = "list",
	  .args = "",
	  .summary = "List hosts with state, capacity and use.",
	  .run = host_list },
	CLI_CMD_1("host", "show", "ID", "Show one host.", host_show),
	{ .object = "host",
	  .verb = "add",
	  .args = "ID [--ttl SECONDS]",
	  .summary = "Let host ID join: prints a one-time join token for its "
		     "canopy-agent --join.",
	  .help = "  --ttl SECONDS       how long the token works (60..604800, "
		  "default 3600);\n"
		  "                      adding the host again replaces it\n",
	  .opts = add_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = host_add },
	{ .object = "host",
	  .verb = "remove",
	  .args = "ID [--force]",
	  .summary = "Remove a host (refused while it runs VMs); its bus key "
		     "stops working.",
	  .help = "  --force             also a connected host: the manager "
		  "refuses its\n"
		  "                      agent from the next message on\n",
	  .opts = remove_opts,
	  .min_pos = 1,
	  .max_pos = 1,
	  .run = host_remove },
	{ 0 },
};

static int ds_row(struct cli_table *t, const ProtobufCMessage *m, uint64_t now)
{
	const Canopy__V1__Datastore *d = (const Canopy__V1__Datastore *)m;
	char cap[32], free_[32], hosts[256];
	const char *row[] = { d->name, d->uuid, cap, free_, hosts };
	size_t i, o = 0;

	/* No capacity: no host has opened it to measure (shown as "-"). */
	snprintf(cap, sizeof(cap), "-");
	snprintf(free_, sizeof(free_), "-");
	if (d->capacity_bytes) {
		cli_fmt_bytes(cap, sizeof(cap), d->capacity_bytes);
		cli_fmt_bytes(free_, sizeof(free_), d->free_bytes);
	}
	hosts[0] = '\0';
	for (i = 0; i < d->n_hosts && o < sizeof(hosts); i++)
		o += (size_t)snprintf(hosts + o, sizeof(hosts) - o, "%s%s",
				      i ? "," : "", d->hosts[i]);
	return cli_table_add(t, row);
}

static int datastore_list(struct cli *c, const struct cli_args *a)
{
	static const char *const hdr[] = { "NAME", "UUID", "CAPACITY", "FREE",
					   "HOSTS" };
	static const struct cli_list l = {
		.method = M_LIST_DATASTORES,
		.resp_desc = &canopy__v1__list_datastores_response__descriptor,
		.field = "datastores",
		.ncols = CN_ARRAY_SIZE(hdr),
		.hdr = hdr,
		.row = ds_row,
	};
	Canopy__V1__ListDatastoresRequest req =
		CANOPY__V1__LIST_DATASTORES_REQUEST__INIT;

	/* Not paged: the request has no page token, so one call. */
	return cli_list_run(c, &l, &req.base);
}

const struct cli_cmd cli_datastore_cmds[] = {
	{ .object = "datastore",
	  .verb = "list",
	  .args = "",
	  .summary = "List datastores with capacity, free space and the "
		     "hosts that mount them.",
	  .run = datastore_list },
	{ 0 },
};
