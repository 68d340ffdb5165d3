/* Unit tests for canopy-agent's pure parts: VM id and spec checks, the spec
 * file round trip, the canopy-vmm command line and reading vmm.log. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/agent/spec.h"

/* Protobuf-c string fields are char *; tests assign literals. */
#define S(lit) ((char *)(lit))

static char msg[512];

static void test_vm_ids(void **state)
{
	static const char *const good[] = { "a", "web1", "0", "a-b-c",
					    "x123456789x123456789x123456789x"
					    "123456789x123456789x123456789x12" };
	static const char *const bad[] = { "",	    "A",	"web_1", "a/b",
					   "..",    "../x",	"a.b",	 "a b",
					   "web\n", "w\xc3\xa9" };
	char long_id[80];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(agent_vm_id_check(good[i], msg, sizeof(msg)),
				 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg[0] = 0;
		assert_int_equal(agent_vm_id_check(bad[i], msg, sizeof(msg)),
				 -EINVAL);
		assert_non_null(strstr(msg, "VM id"));
	}
	memset(long_id, 'a', 64);
	long_id[64] = 0;
	assert_int_equal(agent_vm_id_check(long_id, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "at most 63"));
	long_id[63] = 0;
	assert_int_equal(agent_vm_id_check(long_id, msg, sizeof(msg)), 0);
	assert_int_equal(agent_vm_id_check(NULL, msg, sizeof(msg)), -EINVAL);
}

struct spec_fixture {
	Canopy__V1__VmSpec spec;
	Canopy__V1__DiskSpec disk[2];
	Canopy__V1__DiskSpec *disks[2];
};

static void fixture_init(struct spec_fixture *f)
{
	canopy__v1__vm_spec__init(&f->spec);
	f->spec.name = S("web1");
	f->spec.cpus = 2;
	f->spec.memory_mib = 256;
	f->spec.kernel = S("/boot/k.elf");
	f->spec.cmdline = S("count=100");
	for (int i = 0; i < 2; i++) {
		canopy__v1__disk_spec__init(&f->disk[i]);
		f->disks[i] = &f->disk[i];
	}
	f->disk[0].path = S("disk0.img");
	f->disk[0].size_bytes = 1 << 20;
	f->disk[0].serial = S("d0");
	f->disk[1].path = S("/srv/images/base.img");
	f->disk[1].readonly = 1;
	f->disk[1].direct = 1;
	f->spec.disks = f->disks;
	f->spec.n_disks = 2;
}

/* Check the fixture after mutate() fails with rc and a message with want. */
static void expect_bad(void (*mutate)(struct spec_fixture *), int rc,
		       const char *want)
{
	struct spec_fixture f;

	fixture_init(&f);
	mutate(&f);
	msg[0] = 0;
	assert_int_equal(agent_spec_check(&f.spec, msg, sizeof(msg)), rc);
	if (!strstr(msg, want))
		fail_msg("message '%s' lacks '%s'", msg, want);
}

static void m_cpus0(struct spec_fixture *f)
{
	f->spec.cpus = 0;
}
static void m_cpus65(struct spec_fixture *f)
{
	f->spec.cpus = 65;
}
static void m_mem(struct spec_fixture *f)
{
	f->spec.memory_mib = 15;
}
static void m_mem_big(struct spec_fixture *f)
{
	f->spec.memory_mib = (1ull << 20) + 1;
}
static void m_kernel_empty(struct spec_fixture *f)
{
	f->spec.kernel = S("");
}
static void m_kernel_null(struct spec_fixture *f)
{
	f->spec.kernel = NULL;
}
static void m_kernel_rel(struct spec_fixture *f)
{
	f->spec.kernel = S("boot/k");
}
static void m_kernel_dotdot(struct spec_fixture *f)
{
	f->spec.kernel = S("/boot/../etc/shadow");
}
static void m_kernel_dotdot_end(struct spec_fixture *f)
{
	f->spec.kernel = S("/boot/..");
}
static void m_kernel_comma(struct spec_fixture *f)
{
	f->spec.kernel = S("/boot/k,x");
}
static void m_kernel_ctl(struct spec_fixture *f)
{
	f->spec.kernel = S("/boot/k\n");
}
static void m_initrd(struct spec_fixture *f)
{
	f->spec.initrd = S("initrd.img");
}
static void m_name(struct spec_fixture *f)
{
	f->spec.name = S("bad\x01name");
}
static void m_disk_ds_empty(struct spec_fixture *f)
{
	f->disk[0].path = S("ds1:");
}
static void m_disk_ds_name(struct spec_fixture *f)
{
	f->disk[0].path = S("DS_1:x");
}
static void m_disk_ds_dotdot(struct spec_fixture *f)
{
	f->disk[0].path = S("ds1:a/../b");
}
static void m_disk_ds_slashes(struct spec_fixture *f)
{
	f->disk[0].path = S("ds1:a//b");
}
static void m_disk_ds_char(struct spec_fixture *f)
{
	f->disk[0].path = S("ds1:a b");
}
static void m_disk_ds_direct(struct spec_fixture *f)
{
	f->disk[0].path = S("ds1:web1/disk0");
	f->disk[0].direct = 1;
}
static void m_disk_rel(struct spec_fixture *f)
{
	f->disk[0].path = S("sub/disk0");
}
static void m_disk_hidden(struct spec_fixture *f)
{
	f->disk[0].path = S(".disk");
}
static void m_disk_spec(struct spec_fixture *f)
{
	f->disk[0].path = S("spec.pb");
}
static void m_disk_empty(struct spec_fixture *f)
{
	f->disk[0].path = S("");
}
static void m_disk_size(struct spec_fixture *f)
{
	f->disk[0].size_bytes = 513;
}
static void m_disk_huge(struct spec_fixture *f)
{
	f->disk[0].size_bytes = (16ull << 40) + 512;
}
static void m_serial(struct spec_fixture *f)
{
	f->disk[0].serial = S("has,comma");
}
static void m_nics(struct spec_fixture *f)
{
	f->spec.n_nics = 1;
}
static void m_disks17(struct spec_fixture *f)
{
	f->spec.n_disks = 17;
}

static void test_spec_checks(void **state)
{
	struct spec_fixture f;

	fixture_init(&f);
	assert_int_equal(agent_spec_check(&f.spec, msg, sizeof(msg)), 0);
	f.spec.name = NULL;
	f.spec.cmdline = NULL;
	assert_int_equal(agent_spec_check(&f.spec, msg, sizeof(msg)), 0);
	assert_int_equal(agent_spec_check(NULL, msg, sizeof(msg)), -EINVAL);
	expect_bad(m_cpus0, -EINVAL, "cpus 0 is out of range");
	expect_bad(m_cpus65, -EINVAL, "cpus 65");
	expect_bad(m_mem, -EINVAL, "memory 15 MiB");
	expect_bad(m_mem_big, -EINVAL, "out of range");
	expect_bad(m_kernel_empty, -EINVAL, "kernel is empty");
	expect_bad(m_kernel_null, -EINVAL, "kernel is empty");
	expect_bad(m_kernel_rel, -EINVAL, "not an absolute path");
	expect_bad(m_kernel_dotdot, -EINVAL, "'..'");
	expect_bad(m_kernel_dotdot_end, -EINVAL, "'..'");
	expect_bad(m_kernel_comma, -EINVAL, "','");
	expect_bad(m_kernel_ctl, -EINVAL, "control character");
	expect_bad(m_initrd, -EINVAL, "initrd");
	expect_bad(m_name, -EINVAL, "name");
	expect_bad(m_disk_ds_empty, -EINVAL, "not DATASTORE:FILE");
	expect_bad(m_disk_ds_name, -EINVAL, "not DATASTORE:FILE");
	expect_bad(m_disk_ds_dotdot, -EINVAL, "not DATASTORE:FILE");
	expect_bad(m_disk_ds_slashes, -EINVAL, "not DATASTORE:FILE");
	expect_bad(m_disk_ds_char, -EINVAL, "not DATASTORE:FILE");
	expect_bad(m_disk_ds_direct, -EINVAL, "drop 'direct'");
	expect_bad(m_disk_rel, -EINVAL, "plain file name");
	expect_bad(m_disk_hidden, -EINVAL, "plain file name");
	expect_bad(m_disk_spec, -EINVAL, "plain file name");
	expect_bad(m_disk_empty, -EINVAL, "plain file name");
	expect_bad(m_disk_size, -EINVAL, "multiple of 512");
	expect_bad(m_disk_huge, -EINVAL, "16 TiB");
	expect_bad(m_serial, -EINVAL, "serial");
	expect_bad(m_nics, -EOPNOTSUPP, "network");
	expect_bad(m_disks17, -EINVAL, "at most 16");
	/* "..." and "a..b" are names, not parent links. */
	fixture_init(&f);
	f.spec.kernel = S("/boot/a..b/...");
	assert_int_equal(agent_spec_check(&f.spec, msg, sizeof(msg)), 0);
	/* A datastore disk. */
	f.disk[0].path = S("ds-1:web1/disk0.img");
	assert_int_equal(agent_spec_check(&f.spec, msg, sizeof(msg)), 0);
}

static void test_spec_file_round_trip(void **state)
{
	char dir[] = "/tmp/agent-spec-XXXXXX", path[128];
	struct spec_fixture f;
	Canopy__V1__VmSpec *back = NULL;
	struct stat sb;
	FILE *fp;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spec.pb", dir);
	fixture_init(&f);
	assert_int_equal(agent_spec_save(path, &f.spec), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(agent_spec_load(path, &back, msg, sizeof(msg)), 0);
	assert_string_equal(back->name, "web1");
	assert_int_equal(back->cpus, 2);
	assert_int_equal(back->memory_mib, 256);
	assert_string_equal(back->kernel, "/boot/k.elf");
	assert_int_equal(back->n_disks, 2);
	assert_string_equal(back->disks[1]->path, "/srv/images/base.img");
	assert_true(back->disks[1]->readonly && back->disks[1]->direct);
	assert_int_equal(back->disks[0]->size_bytes, 1 << 20);
	canopy__v1__vm_spec__free_unpacked(back, NULL);
	/* Garbage, a spec that fails the checks, a missing file. */
	fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs("\xff\xff\xff\xff garbage", fp);
	fclose(fp);
	assert_int_equal(agent_spec_load(path, &back, msg, sizeof(msg)),
			 -EBADMSG);
	assert_non_null(strstr(msg, "not a VmSpec"));
	f.spec.cpus = 0;
	assert_int_equal(agent_spec_save(path, &f.spec), 0);
	assert_int_equal(agent_spec_load(path, &back, msg, sizeof(msg)),
			 -EINVAL);
	assert_non_null(strstr(msg, "cpus 0"));
	unlink(path);
	assert_int_equal(agent_spec_load(path, &back, msg, sizeof(msg)),
			 -ENOENT);
	rmdir(dir);
}

/* argv as one space-separated string. */
static void join(const struct agent_argv *a, char *out, size_t len)
{
	size_t o = 0;

	out[0] = 0;
	for (size_t i = 0; i < a->n; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", i ? " " : "",
				      a->v[i]);
}

static void test_vmm_argv(void **state)
{
	struct spec_fixture f;
	struct agent_argv av;
	char s[2048];

	fixture_init(&f);
	assert_int_equal(agent_vmm_argv_build("/bin/canopy-vmm",
					      "/run/vms/web1", "web1", &f.spec,
					      NULL, &av),
			 0);
	assert_null(av.v[av.n]);
	join(&av, s, sizeof(s));
	assert_string_equal(s,
			    "/bin/canopy-vmm --name web1 --kernel /boot/k.elf "
			    "--cmdline count=100 --memory 256 --cpus 2 "
			    "--serial file:/run/vms/web1/console.log "
			    "--control control.sock "
			    "--disk path=/run/vms/web1/disk0.img,serial=d0 "
			    "--disk path=/srv/images/base.img,readonly,direct");
	agent_argv_free(&av);
	/* No cmdline, an initrd, no disks. */
	f.spec.cmdline = S("");
	f.spec.initrd = S("/boot/initrd");
	f.spec.n_disks = 0;
	assert_int_equal(
		agent_vmm_argv_build("vmm", "/d", "x", &f.spec, NULL, &av), 0);
	join(&av, s, sizeof(s));
	assert_string_equal(s, "vmm --name x --kernel /boot/k.elf --initrd "
			       "/boot/initrd --memory 256 --cpus 2 --serial "
			       "file:/d/console.log --control control.sock");
	agent_argv_free(&av);
	agent_argv_free(&av); /* twice is harmless */
}

static void test_vmm_argv_datastore(void **state)
{
	struct spec_fixture f;
	struct agent_ds_disk ds[2] = { { "/dev/sdb", 7 }, { NULL, 0 } };
	struct agent_argv av;
	char s[2048];

	fixture_init(&f);
	f.disk[0].path = S("ds1:web1/disk0");
	assert_int_equal(
		agent_vmm_argv_build("vmm", "/d", "x", &f.spec, ds, &av), 0);
	join(&av, s, sizeof(s));
	assert_non_null(
		strstr(s, "--disk ds=/dev/sdb:web1/disk0,host=7,serial=d0 "
			  "--disk path=/srv/images/base.img,readonly,direct"));
	agent_argv_free(&av);
	/* A datastore disk needs its volume and slot. */
	assert_int_equal(agent_vmm_argv_build("vmm", "/d", "x", &f.spec, NULL,
					      &av),
			 -EINVAL);
	agent_argv_free(&av);
	ds[0].slot = 0;
	assert_int_equal(agent_vmm_argv_build("vmm", "/d", "x", &f.spec, ds,
					      &av),
			 -EINVAL);
	agent_argv_free(&av);
}

static void test_ds_path_split(void **state)
{
	char name[64];
	const char *file = NULL;

	assert_int_equal(agent_ds_path_split("ds1:a/b.img", name, sizeof(name),
					     &file),
			 1);
	assert_string_equal(name, "ds1");
	assert_string_equal(file, "a/b.img");
	assert_int_equal(
		agent_ds_path_split("/abs:x", name, sizeof(name), &file), 0);
	assert_int_equal(
		agent_ds_path_split("plain.img", name, sizeof(name), &file), 0);
	assert_int_equal(agent_ds_path_split(":x", name, sizeof(name), &file),
			 -EINVAL);
	assert_int_equal(agent_ds_path_split("ds1:x", name, 3, &file), -EINVAL);
}

static void write_text(const char *path, const char *text, const char *mode)
{
	FILE *fp = fopen(path, mode);

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_vmm_log(void **state)
{
	char dir[] = "/tmp/agent-log-XXXXXX", path[128], out[256];
	uint64_t mark;
	char big[6000];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vmm.log", dir);
	/* No log at all. */
	assert_int_equal(agent_log_size(dir), 0);
	agent_log_tail(dir, 0, out, sizeof(out));
	assert_string_equal(out, "");
	assert_int_equal(agent_log_reason(dir, 0, out, sizeof(out)), -ENOENT);
	/* An older run, then a new one that has not stopped yet. */
	write_text(path,
		   "t level=info comp=vmm msg=\"vm started\" vm=a\n"
		   "t level=info comp=vmm msg=\"vm stopped\" vm=a "
		   "reason=\"old run\"\n",
		   "w");
	assert_int_equal(agent_log_reason(dir, 0, out, sizeof(out)), 0);
	assert_string_equal(out, "old run");
	mark = agent_log_size(dir);
	assert_true(mark > 0);
	write_text(path, "t level=info comp=vmm msg=\"vm started\" vm=a\n",
		   "a");
	assert_int_equal(agent_log_reason(dir, mark, out, sizeof(out)),
			 -ENOENT);
	agent_log_tail(dir, mark, out, sizeof(out));
	assert_string_equal(out,
			    "t level=info comp=vmm msg=\"vm started\" vm=a");
	/* Its stop line; the last one wins; a line cut short is no reason. */
	write_text(path,
		   "x\ny msg=\"vm stopped\" vm=a reason=\"guest powered off "
		   "(ACPI S5)\" exits=3\n\n",
		   "a");
	assert_int_equal(agent_log_reason(dir, mark, out, sizeof(out)), 0);
	assert_string_equal(out, "guest powered off (ACPI S5)");
	agent_log_tail(dir, mark, out, sizeof(out));
	assert_non_null(strstr(out, "vm=a; x; y msg="));
	write_text(path, "z msg=\"vm stopped\" reason=\"cut", "a");
	assert_int_equal(agent_log_reason(dir, mark, out, sizeof(out)),
			 -ENOENT);
	/* Only the last 4 KiB are read, and a small buffer is not overrun. */
	memset(big, 'b', sizeof(big) - 2);
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = 0;
	write_text(path, big, "a");
	agent_log_tail(dir, 0, out, 16);
	assert_true(strlen(out) > 8 && strlen(out) < 16);
	assert_int_equal(strspn(out, "b"), strlen(out));
	unlink(path);
	rmdir(dir);
}

static void test_disk_path(void **state)
{
	Canopy__V1__DiskSpec d = CANOPY__V1__DISK_SPEC__INIT;
	char out[32];

	d.path = S("a.img");
	assert_int_equal(agent_disk_path("/r/vms/x", &d, out, sizeof(out)), 0);
	assert_string_equal(out, "/r/vms/x/a.img");
	d.path = S("/abs.img");
	assert_int_equal(agent_disk_path("/r/vms/x", &d, out, sizeof(out)), 0);
	assert_string_equal(out, "/abs.img");
	d.path = S("a-very-long-file-name-that-does-not-fit.img");
	assert_int_equal(agent_disk_path("/r", &d, out, sizeof(out)),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_ids),
		cmocka_unit_test(test_spec_checks),
		cmocka_unit_test(test_spec_file_round_trip),
		cmocka_unit_test(test_vmm_argv),
		cmocka_unit_test(test_disk_path),
		cmocka_unit_test(test_vmm_argv_datastore),
		cmocka_unit_test(test_ds_path_split),
		cmocka_unit_test(test_vmm_log),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
