/* canopy-vmm: command line and configuration, then set-up and run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "host/vmm/jail.h"
#include "host/vmm/migrate_tls.h"
#include "host/vmm/virtio_blk.h"
#include "host/vmm/virtio_net.h"
#include "host/vmm/vmm.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/opts.h"

/* Defaults of a VM started without those options. */
#define VMM_DEFAULT_MEM_MIB 256
#define VMM_DEFAULT_CPUS 1

static const char usage[] =
	"usage: canopy-vmm --kernel FILE [--initrd FILE] [--cmdline STR]\n"
	"                  [--memory MiB] [--cpus N] [--serial stdio|none|file:PATH]\n"
	"                  [--control PATH] [--restore FILE] [--name NAME]\n"
	"                  [--hugepages] [--log-level LEVEL] [--config FILE]\n"
	"                  [--disk path=FILE[,readonly][,direct][,serial=ID]]...\n"
	"                  [--net tap=NAME[,mac=M] | "
	"--net unix=PATH[,local=PATH][,mac=M]]...\n"
	"                  [--balloon] [--rng on|off]\n"
	"                  [--incoming tcp:HOST:PORT]  (receive a live migration)\n"
	"                  [--tls-ca PEM --tls-cert PEM --tls-key PEM]\n"
	"                    (mutual TLS on migration streams, both ways)\n"
	"                  [--jail-uid N] [--jail-dir DIR] [--no-jail]\n"
	"Started as root it jails itself (own mount namespace, own uid,\n"
	"no capabilities; docs/security.md); --no-jail is for debugging.\n"
	"A --config FILE holds the same keys as 'key = value' lines; options\n"
	"given on the command line win over the file.\n"
	"Exit status: 0 guest powered off or stopped, 2 bad usage or\n"
	"configuration, 3 KVM unusable, 4 guest crashed or VMM failure.\n";

/* Options as given, before the config file fills the gaps. */
struct opts {
	struct vm_config cfg;
	const char *memory, *cpus;
};

/* Options the handler takes (none of them config keys). */
enum { VMM_OPT_DISK, VMM_OPT_NET, VMM_OPT_RNG, VMM_OPT_LOGLEVEL };

#define STR(n, fld) OPT_STR(n, struct opts, fld)
#define CALL(n, i)                                                      \
	{                                                               \
		.name = n, .kind = OPT_CALL, .id = i, .no_config = true \
	}
static const struct opt_def opt_defs[] = {
	STR("kernel", cfg.kernel),
	STR("initrd", cfg.initrd),
	STR("cmdline", cfg.cmdline),
	STR("memory", memory),
	STR("cpus", cpus),
	STR("serial", cfg.serial),
	STR("control", cfg.control),
	STR("restore", cfg.restore),
	STR("name", cfg.name),
	OPT_SWITCH("hugepages", struct opts, cfg.hugepages),
	CALL("log-level", VMM_OPT_LOGLEVEL),
	CALL("disk", VMM_OPT_DISK),
	CALL("net", VMM_OPT_NET),
	{ .name = "balloon",
	  .kind = OPT_BOOL,
	  .off = offsetof(struct opts, cfg.balloon),
	  .no_config = true },
	CALL("rng", VMM_OPT_RNG),
	{ .name = "incoming",
	  .kind = OPT_STRING,
	  .off = offsetof(struct opts, cfg.incoming),
	  .no_config = true },
	{ .name = "tls-ca",
	  .kind = OPT_STRING,
	  .off = offsetof(struct opts, cfg.tls_ca),
	  .no_config = true },
	{ .name = "tls-cert",
	  .kind = OPT_STRING,
	  .off = offsetof(struct opts, cfg.tls_cert),
	  .no_config = true },
	{ .name = "tls-key",
	  .kind = OPT_STRING,
	  .off = offsetof(struct opts, cfg.tls_key),
	  .no_config = true },
	STR("jail-uid", cfg.jail_uid),
	STR("jail-dir", cfg.jail_dir),
	OPT_SWITCH("no-jail", struct opts, cfg.no_jail),
	{ 0 },
};
#undef CALL
#undef STR

static int parse_u64(const char *what, const char *s, uint64_t min,
		     uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-') {
		fprintf(stderr, "canopy-vmm: %s: '%s' is not a number\n", what,
			s);
		return -EINVAL;
	}
	if (v < min || v > max) {
		fprintf(stderr,
			"canopy-vmm: %s: %llu is out of range (%llu..%llu)\n",
			what, v, (unsigned long long)min,
			(unsigned long long)max);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

/* "on" or "off" for option `what`. */
static int parse_on_off(const char *what, const char *s, int *out)
{
	if (strcmp(s, "on") == 0 || strcmp(s, "off") == 0) {
		*out = s[1] == 'n';
		return 0;
	}
	fprintf(stderr, "canopy-vmm: --%s %s: expected on or off\n", what, s);
	return -EINVAL;
}

/* --disk and --net (again for each), --rng on|off, --log-level. */
static int on_option(void *base, int id, const char *val, bool from_config)
{
	struct opts *o = base;
	enum log_level l;

	switch (id) {
	case VMM_OPT_DISK:
		if (o->cfg.ndisks >= VMM_MAX_DISKS) {
			fprintf(stderr,
				"canopy-vmm: at most %d --disk options\n",
				VMM_MAX_DISKS);
			return -EINVAL;
		}
		o->cfg.disk[o->cfg.ndisks++] = val;
		return 0;
	case VMM_OPT_NET:
		if (o->cfg.nnets >= VMM_MAX_NICS) {
			fprintf(stderr,
				"canopy-vmm: at most %d --net options\n",
				VMM_MAX_NICS);
			return -EINVAL;
		}
		o->cfg.net[o->cfg.nnets++] = val;
		return 0;
	case VMM_OPT_RNG:
		return parse_on_off("rng", val, &o->cfg.rng);
	default:
		if (log_level_parse(val, &l) < 0) {
			fprintf(stderr,
				"canopy-vmm: --log-level %s: expected "
				"debug, info, warn or error\n",
				val);
			return -EINVAL;
		}
		log_set_level(l);
		return 0;
	}
}

static const struct opt_prog vmm_prog = {
	.name = "canopy-vmm",
	.usage = usage,
	.defs = opt_defs,
	.handle = on_option,
};

static uint64_t host_mem_mib(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || psz <= 0)
		return VMM_MAX_MEM_MIB;
	return (uint64_t)pages * (uint64_t)psz >> 20;
}

static int validate_nets(const struct opts *o)
{
	for (unsigned i = 0; i < o->cfg.nnets; i++) {
		struct net_spec spec;
		char err[256];

		if (net_spec_parse(o->cfg.net[i], &spec, err, sizeof(err)) <
		    0) {
			fprintf(stderr, "canopy-vmm: %s\n", err);
			return -EINVAL;
		}
	}
	return 0;
}

/* --tls-ca, --tls-cert, --tls-key: all three or none. */
static int validate_tls(const struct opts *o)
{
	int n = !!o->cfg.tls_ca + !!o->cfg.tls_cert + !!o->cfg.tls_key;

	if (n == 0 || n == 3)
		return 0;
	fprintf(stderr, "canopy-vmm: --tls-ca, --tls-cert and --tls-key go "
			"together: give all three or none\n");
	return -EINVAL;
}

static int validate(struct opts *o)
{
	uint64_t v, host = host_mem_mib();
	int rc;

	if (o->cfg.incoming && o->cfg.restore) {
		fprintf(stderr, "canopy-vmm: --incoming and --restore "
				"exclude each other\n");
		return -EINVAL;
	}
	if (!o->cfg.kernel && !o->cfg.restore && !o->cfg.incoming) {
		fprintf(stderr, "canopy-vmm: --kernel FILE is required\n%s",
			usage);
		return -EINVAL;
	}
	o->cfg.mem_mib = VMM_DEFAULT_MEM_MIB;
	if (o->memory) {
		rc = parse_u64("memory (MiB)", o->memory, VMM_MIN_MEM_MIB,
			       VMM_MAX_MEM_MIB, &o->cfg.mem_mib);
		if (rc < 0)
			return rc;
	}
	if (o->cfg.mem_mib > host) {
		fprintf(stderr,
			"canopy-vmm: memory: %llu MiB is more than this host "
			"has (%llu MiB)\n",
			(unsigned long long)o->cfg.mem_mib,
			(unsigned long long)host);
		return -ENOMEM;
	}
	o->cfg.cpus = VMM_DEFAULT_CPUS;
	if (o->cpus) {
		rc = parse_u64("cpus", o->cpus, 1, VMM_MAX_VCPUS, &v);
		if (rc < 0)
			return rc;
		o->cfg.cpus = (unsigned)v;
	}
	if (!o->cfg.name)
		o->cfg.name = "vm";
	if (o->cfg.jail_uid) {
		char err[160];
		uid_t uid;

		if (vmm_jail_uid_parse(o->cfg.jail_uid, &uid, err,
				       sizeof(err)) < 0) {
			fprintf(stderr, "canopy-vmm: %s\n", err);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < o->cfg.ndisks; i++) {
		struct blk_spec spec;
		char err[256];

		if (blk_spec_parse(o->cfg.disk[i], &spec, err, sizeof(err)) <
		    0) {
			fprintf(stderr, "canopy-vmm: %s\n", err);
			return -EINVAL;
		}
	}
	return validate_nets(o) ?: validate_tls(o);
}

/* The migration TLS credentials, read now: the jail hides their files. */
static int load_tls(struct vm *vm)
{
	char err[512];
	int rc;

	if (!vm->cfg.tls_ca)
		return 0;
	rc = mig_tls_load(vm->cfg.tls_ca, vm->cfg.tls_cert, vm->cfg.tls_key,
			  &vm->mig_tls, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "canopy-vmm: %s\n", err);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct config *keep = NULL;
	struct vm *vm;
	char err[512] = "";
	sigset_t set;
	int rc;

	rc = opt_parse(&vmm_prog, argc, argv, &o, &keep);
	if (rc == 0)
		rc = validate(&o);
	if (rc != 0) {
		config_free(keep);
		return rc == OPT_HELP ? 0 : VMM_EXIT_USAGE;
	}
	/* The kick signal is for vCPU threads only; they unblock it. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		die("out of memory");
	vm->cfg = o.cfg;
	if (load_tls(vm) < 0) {
		free(vm);
		config_free(keep);
		return VMM_EXIT_USAGE;
	}
	rc = vmm_jail_init(vm, err, sizeof(err));
	if (rc == 0)
		rc = vmm_setup(vm, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "canopy-vmm: %s\n", err);
		vmm_teardown(vm);
		rc = vm->kvm_unusable ? VMM_EXIT_NO_KVM : VMM_EXIT_USAGE;
	} else {
		rc = vmm_run(vm);
	}
	mig_tls_free(vm->mig_tls);
	free(vm);
	config_free(keep);
	return rc;
}
