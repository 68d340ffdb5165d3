/* canopy-vmm: command line and configuration, then set-up and run. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "host/vmm/virtio_blk.h"
#include "host/vmm/virtio_net.h"
#include "host/vmm/vmm.h"
#include "lib/config.h"
#include "lib/log.h"

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
	"A --config FILE holds the same keys as 'key = value' lines; options\n"
	"given on the command line win over the file.\n"
	"Exit status: 0 guest powered off or stopped, 2 bad usage or\n"
	"configuration, 3 KVM unusable, 4 guest crashed or VMM failure.\n";

static const char *const config_keys[] = {
	"kernel",  "initrd",  "cmdline", "memory",    "cpus", "serial",
	"control", "restore", "name",	 "hugepages", NULL,
};

enum {
	OPT_KERNEL = 'k',
	OPT_INITRD = 'i',
	OPT_CMDLINE = 'a',
	OPT_MEMORY = 'm',
	OPT_CPUS = 'c',
	OPT_SERIAL = 's',
	OPT_CONTROL = 'C',
	OPT_RESTORE = 'r',
	OPT_NAME = 'n',
	OPT_CONFIG = 'f',
	OPT_HUGE = 'H',
	OPT_LOGLEVEL = 'L',
	OPT_HELP = 'h',
	OPT_DISK = 'd',
	OPT_NET = 'N',
	OPT_BALLOON = 'b',
	OPT_RNG = 'R',
	OPT_INCOMING = 'I',
};

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "hugepages", no_argument, NULL, OPT_HUGE },
	{ "log-level", required_argument, NULL, OPT_LOGLEVEL },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "balloon", no_argument, NULL, OPT_BALLOON },
	{ "rng", required_argument, NULL, OPT_RNG },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ NULL, 0, NULL, 0 },
};

/* Options as given, before the config file fills the gaps. */
struct opts {
	struct vm_config cfg;
	const char *memory, *cpus, *config;
	int hugepages_set;
};

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

static int parse_args(int argc, char **argv, struct opts *o)
{
	int c;

	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			o->cfg.kernel = optarg;
			break;
		case OPT_INITRD:
			o->cfg.initrd = optarg;
			break;
		case OPT_CMDLINE:
			o->cfg.cmdline = optarg;
			break;
		case OPT_MEMORY:
			o->memory = optarg;
			break;
		case OPT_CPUS:
			o->cpus = optarg;
			break;
		case OPT_SERIAL:
			o->cfg.serial = optarg;
			break;
		case OPT_CONTROL:
			o->cfg.control = optarg;
			break;
		case OPT_RESTORE:
			o->cfg.restore = optarg;
			break;
		case OPT_NAME:
			o->cfg.name = optarg;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			break;
		case OPT_DISK:
			if (o->cfg.ndisks >= VMM_MAX_DISKS) {
				fprintf(stderr,
					"canopy-vmm: at most %d --disk options\n",
					VMM_MAX_DISKS);
				return -EINVAL;
			}
			o->cfg.disk[o->cfg.ndisks++] = optarg;
			break;
		case OPT_NET:
			if (o->cfg.nnets >= VMM_MAX_NICS) {
				fprintf(stderr,
					"canopy-vmm: at most %d --net options\n",
					VMM_MAX_NICS);
				return -EINVAL;
			}
			o->cfg.net[o->cfg.nnets++] = optarg;
			break;
		case OPT_BALLOON:
			o->cfg.balloon = 1;
			break;
		case OPT_RNG:
			if (parse_on_off("rng", optarg, &o->cfg.rng) < 0)
				return -EINVAL;
			break;
		case OPT_INCOMING:
			o->cfg.incoming = optarg;
			break;
		case OPT_HUGE:
			o->cfg.hugepages = o->hugepages_set = 1;
			break;
		case OPT_LOGLEVEL: {
			enum log_level l;

			if (log_level_parse(optarg, &l) < 0) {
				fprintf(stderr,
					"canopy-vmm: --log-level %s: expected "
					"debug, info, warn or error\n",
					optarg);
				return -EINVAL;
			}
			log_set_level(l);
			break;
		}
		case OPT_HELP:
			fputs(usage, stdout);
			exit(0);
		default:
			fputs(usage, stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "canopy-vmm: unexpected argument '%s'\n%s",
			argv[optind], usage);
		return -EINVAL;
	}
	return 0;
}

/* Fill what the command line left unset from the config file. The file's
 * strings live as long as the process: *keep is never freed. */
static int apply_config(struct opts *o, struct config **keep)
{
	char err[512];
	struct config *c;
	const char *v;
	int rc = config_load(o->config, &c, err, sizeof(err));

	if (rc == 0)
		rc = config_check_keys(c, config_keys, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "canopy-vmm: %s\n", err);
		return rc;
	}
	*keep = c;
#define FILL(field, key)                                          \
	do {                                                      \
		if (!(field) && (v = config_get(c, key)) != NULL) \
			(field) = v;                              \
	} while (0)
	FILL(o->cfg.kernel, "kernel");
	FILL(o->cfg.initrd, "initrd");
	FILL(o->cfg.cmdline, "cmdline");
	FILL(o->memory, "memory");
	FILL(o->cpus, "cpus");
	FILL(o->cfg.serial, "serial");
	FILL(o->cfg.control, "control");
	FILL(o->cfg.restore, "restore");
	FILL(o->cfg.name, "name");
#undef FILL
	if (!o->hugepages_set &&
	    config_get_bool(c, "hugepages", &o->cfg.hugepages, err,
			    sizeof(err)) == -EINVAL) {
		fprintf(stderr, "canopy-vmm: %s\n", err);
		return -EINVAL;
	}
	return 0;
}

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
	for (unsigned i = 0; i < o->cfg.ndisks; i++) {
		struct blk_spec spec;
		char err[256];

		if (blk_spec_parse(o->cfg.disk[i], &spec, err, sizeof(err)) <
		    0) {
			fprintf(stderr, "canopy-vmm: %s\n", err);
			return -EINVAL;
		}
	}
	return validate_nets(o);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct config *keep = NULL;
	struct vm *vm;
	char err[512] = "";
	sigset_t set;
	int rc;

	if (parse_args(argc, argv, &o) < 0)
		return VMM_EXIT_USAGE;
	if (o.config && apply_config(&o, &keep) < 0)
		return VMM_EXIT_USAGE;
	if (validate(&o) < 0)
		return VMM_EXIT_USAGE;
	/* The kick signal is for vCPU threads only; they unblock it. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		die("out of memory");
	vm->cfg = o.cfg;
	rc = vmm_setup(vm, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "canopy-vmm: %s\n", err);
		vmm_teardown(vm);
		rc = vm->kvm_unusable ? VMM_EXIT_NO_KVM : VMM_EXIT_USAGE;
	} else {
		rc = vmm_run(vm);
	}
	free(vm);
	config_free(keep);
	return rc;
}
