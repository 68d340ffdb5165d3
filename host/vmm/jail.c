/* canopy-vmm's jail: own mount namespace, the VM's files only, own uid. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "host/vmm/jail.h"
#include "host/vmm/virtio_net.h"
#include "host/vmm/vmm.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Directories bound into the jail: the VM's, two per --net unix. */
#define JAIL_MAX_BINDS (1 + 2 * VMM_MAX_NICS)
/* The jail's root: a small tmpfs (directories only), read-only once built. */
#define JAIL_TMPFS_OPTS "mode=0755,size=256k,nr_inodes=512"
#define JAIL_MNT_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

struct jail_bind {
	char path[PATH_MAX]; /* absolute, symlinks resolved */
	int rw;
	int fd; /* O_PATH, taken before the tmpfs hides anything */
};

struct jail_plan {
	uid_t uid;
	struct jail_bind b[JAIL_MAX_BINDS];
	unsigned n;
	char cwd[PATH_MAX]; /* kept inside the jail when under a bind */
};

int vmm_jail_uid_parse(const char *s, uid_t *uid, char *err, size_t errlen)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || v == 0 ||
	    v > VMM_JAIL_UID_MAX || v == VMM_JAIL_UID_NOBODY) {
		snprintf(err, errlen,
			 "--jail-uid %s: expected a uid in 1..%u other than "
			 "%u (nobody)",
			 s, VMM_JAIL_UID_MAX, VMM_JAIL_UID_NOBODY);
		return -EINVAL;
	}
	*uid = (uid_t)v;
	return 0;
}

int vmm_jail_init(struct vm *vm, char *err, size_t errlen)
{
	vm->kernel_fd = vm->initrd_fd = vm->ctl_lfd = -1;
	vm->statm_fd = sys_open("/proc/self/statm", O_RDONLY, 0);
	vm->files_kept = 1;
	if (vm->cfg.no_jail) {
		log_warn("vmm",
			 "running without the jail (--no-jail): for "
			 "debugging only",
			 "vm=%s uid=%u", vm->cfg.name, (unsigned)geteuid());
		return 0;
	}
	if (geteuid() != 0) {
		log_info("vmm",
			 "not started as root: no jail, the process is "
			 "unprivileged already",
			 "vm=%s uid=%u", vm->cfg.name, (unsigned)geteuid());
		return 0;
	}
	/* Now, with one thread: every thread started later shares it. */
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(err, errlen, "jail: mount namespace: %s",
			 strerror(errno));
		return -errno;
	}
	vm->jail_pending = 1;
	return 0;
}

int vmm_jail_read_fd(int fd, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *p;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	p = malloc((size_t)st.st_size + 1);
	if (!p)
		return -ENOMEM;
	n = sys_pread_full(fd, p, (size_t)st.st_size, 0);
	if (n < 0) {
		free(p);
		return (int)n;
	}
	*out = p;
	*len = (size_t)n;
	return 0;
}

/* Add dir (resolved) to the plan unless it is there already. */
static int plan_add(struct jail_plan *pl, const char *dir, int rw, char *err,
		    size_t errlen)
{
	char real[PATH_MAX];

	if (!realpath(dir, real)) {
		snprintf(err, errlen, "jail: %s: %s", dir, strerror(errno));
		return -errno;
	}
	for (unsigned i = 0; i < pl->n; i++)
		if (strcmp(pl->b[i].path, real) == 0) {
			pl->b[i].rw |= rw;
			return 0;
		}
	if (strcmp(real, "/") == 0) {
		snprintf(err, errlen,
			 "jail: %s is the root directory; give the VM a "
			 "directory of its own",
			 dir);
		return -EINVAL;
	}
	if (pl->n == JAIL_MAX_BINDS)
		return -E2BIG;
	snprintf(pl->b[pl->n].path, sizeof(pl->b[pl->n].path), "%s", real);
	pl->b[pl->n].rw = rw;
	pl->b[pl->n].fd = -1;
	pl->n++;
	return 0;
}

/* The directory part of path ("." for a bare name) into out. */
static void dir_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(out, len, ".");
	else if (slash == path)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/*
 * The VM's directory becomes writable for the VMM's uid without handing
 * it the directory: group = the jail's gid, group rwx, and the sticky bit
 * so it can remove and rename only its own files (snapshots), not the
 * agent's (spec, logs). A world-writable directory (like /tmp) is refused:
 * it is shared, and would let the VM's uid see everyone's files. The last
 * VMM started in a directory is the one that may write there.
 */
static int vm_dir_grant(const char *dir, gid_t gid, char *err, size_t errlen)
{
	struct stat st;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "jail: %s: %s", dir,
			 errno ? strerror(errno) : "not a directory");
		return errno ? -errno : -ENOTDIR;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(err, errlen,
			 "jail: %s is a shared (world-writable) directory; "
			 "put the control socket in a directory of the VM's "
			 "own or give --jail-dir",
			 dir);
		return -EPERM;
	}
	if (chown(dir, (uid_t)-1, gid) < 0 ||
	    chmod(dir, (st.st_mode & 07777) | S_ISVTX | S_IRWXG) < 0) {
		snprintf(err, errlen, "jail: %s: %s", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Is dir world-writable (a shared directory like /tmp)? */
static int dir_shared(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 && (st.st_mode & S_IWOTH);
}

/* What the jail holds: the VM's directory, the --net unix peers'. */
static int plan_make(struct vm *vm, struct jail_plan *pl, char *err,
		     size_t errlen)
{
	char dir[PATH_MAX] = "";
	int rc = 0;

	if (vm->cfg.jail_dir)
		snprintf(dir, sizeof(dir), "%s", vm->cfg.jail_dir);
	else if (vm->cfg.control)
		dir_of(vm->cfg.control, dir, sizeof(dir));
	if (!vm->cfg.jail_dir && vm->ctl_lfd >= 0 && dir_shared(dir)) {
		/* The control socket is bound already: the VM just has no
		 * directory to write snapshots in. */
		log_warn("vmm",
			 "jail: the control socket's directory is "
			 "shared (world-writable), so it is not in the "
			 "jail: snapshots cannot be written; give the VM "
			 "a directory of its own or --jail-dir",
			 "vm=%s dir=%s", vm->cfg.name, dir);
	} else if (vm->cfg.jail_dir || vm->cfg.control) {
		rc = plan_add(pl, dir, 1, err, errlen);
		if (rc == 0)
			rc = vm_dir_grant(pl->b[0].path, (gid_t)pl->uid, err,
					  errlen);
	}
	for (unsigned i = 0; rc == 0 && i < vm->cfg.nnets; i++) {
		struct net_spec s;

		rc = net_spec_parse(vm->cfg.net[i], &s, err, errlen);
		if (rc < 0 || !s.remote)
			continue;
		dir_of(s.remote, dir, sizeof(dir));
		rc = plan_add(pl, dir, 0, err, errlen);
		if (rc < 0 || !s.local)
			continue;
		/* Ours, so that we may remove it at exit where the directory
		 * lets us; peers (other VMMs, each with its own uid) send to
		 * it. The directory is mounted writable, its modes decide. */
		dir_of(s.local, dir, sizeof(dir));
		rc = plan_add(pl, dir, 1, err, errlen);
		if (rc == 0 && (chown(s.local, pl->uid, (gid_t)pl->uid) < 0 ||
				chmod(s.local, 0666) < 0)) {
			snprintf(err, errlen, "jail: --net local=%s: %s",
				 s.local, strerror(errno));
			rc = -errno;
		}
	}
	if (rc == 0 && !getcwd(pl->cwd, sizeof(pl->cwd)))
		snprintf(pl->cwd, sizeof(pl->cwd), "/");
	return rc;
}

/*
 * Keep what the running VMM reads by path: the kernel and initrd (a guest
 * reboot loads them again). Bind the control socket now, as root, and
 * give it to the jail's uid (which removes it at exit); not for a VM
 * arriving by migration, whose socket appears only once it has arrived
 * (the agent waits for it): a stale one goes now, as the sticky VM
 * directory would not let the jailed uid replace it.
 */
static int keep_files(struct vm *vm, uid_t uid, char *err, size_t errlen)
{
	struct stat st;

	if (vm->cfg.kernel) {
		vm->kernel_fd = sys_open(vm->cfg.kernel, O_RDONLY, 0);
		if (vm->kernel_fd < 0) {
			snprintf(err, errlen, "jail: kernel %s: %s",
				 vm->cfg.kernel, strerror(-vm->kernel_fd));
			return vm->kernel_fd;
		}
	}
	if (vm->cfg.initrd) {
		vm->initrd_fd = sys_open(vm->cfg.initrd, O_RDONLY, 0);
		if (vm->initrd_fd < 0) {
			snprintf(err, errlen, "jail: initrd %s: %s",
				 vm->cfg.initrd, strerror(-vm->initrd_fd));
			return vm->initrd_fd;
		}
	}
	if (vm->cfg.control && vm->cfg.incoming) {
		if (lstat(vm->cfg.control, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)unlink(vm->cfg.control);
	} else if (vm->cfg.control) {
		vm->ctl_lfd = sys_unix_listen(vm->cfg.control, 16);
		if (vm->ctl_lfd < 0 ||
		    lchown(vm->cfg.control, uid, (gid_t)uid) < 0) {
			snprintf(err, errlen, "control socket %s: %s",
				 vm->cfg.control,
				 strerror(vm->ctl_lfd < 0 ? -vm->ctl_lfd :
							    errno));
			return vm->ctl_lfd < 0 ? vm->ctl_lfd : -errno;
		}
	}
	return 0;
}

/* mkdir -p of path's components under the directory root. */
static int mkdirs(const char *root, const char *path)
{
	char p[PATH_MAX * 2];
	size_t base = strlen(root);

	if (snprintf(p, sizeof(p), "%s%s", root, path) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + base + 1;; s++) {
		char c = *s;

		if (c != '/' && c)
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = c;
		if (!c)
			return 0;
	}
}

/* Bind one directory at its own path under root; read-only unless rw. */
static int bind_one(const char *root, const struct jail_bind *b, char *err,
		    size_t errlen)
{
	char src[64], dst[PATH_MAX * 2];
	unsigned long ro = b->rw ? 0 : MS_RDONLY;
	int rc = mkdirs(root, b->path);

	snprintf(src, sizeof(src), "/proc/self/fd/%d", b->fd);
	snprintf(dst, sizeof(dst), "%s%s", root, b->path);
	if (rc == 0 && mount(src, dst, NULL, MS_BIND, NULL) < 0)
		rc = -errno;
	if (rc == 0 &&
	    mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | JAIL_MNT_FLAGS | ro,
		  NULL) < 0)
		rc = -errno;
	if (rc < 0)
		snprintf(err, errlen, "jail: bind %s: %s", b->path,
			 strerror(-rc));
	return rc;
}

/* Where the new root is built before the pivot: a directory every system
 * has; in our own mount namespace, so nobody else sees the tmpfs. */
static const char *staging_dir(void)
{
	struct stat st;

	if (stat("/tmp", &st) == 0 && S_ISDIR(st.st_mode))
		return "/tmp";
	return "/mnt";
}

static int root_build(struct jail_plan *pl, const char *root, char *err,
		      size_t errlen)
{
	int rc = 0;

	for (unsigned i = 0; i < pl->n; i++) {
		pl->b[i].fd =
			open(pl->b[i].path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (pl->b[i].fd < 0) {
			snprintf(err, errlen, "jail: %s: %s", pl->b[i].path,
				 strerror(errno));
			return -errno;
		}
	}
	if (mount("canopy-jail", root, "tmpfs", JAIL_MNT_FLAGS,
		  JAIL_TMPFS_OPTS) < 0) {
		snprintf(err, errlen, "jail: tmpfs on %s: %s", root,
			 strerror(errno));
		return -errno;
	}
	/* Shorter paths first: a directory inside another bound one. */
	for (unsigned len = 1; rc == 0 && len < PATH_MAX; len++)
		for (unsigned i = 0; rc == 0 && i < pl->n; i++)
			if (strlen(pl->b[i].path) == len)
				rc = bind_one(root, &pl->b[i], err, errlen);
	if (rc == 0 &&
	    mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | JAIL_MNT_FLAGS,
		  NULL) < 0) {
		snprintf(err, errlen, "jail: read-only root: %s",
			 strerror(errno));
		rc = -errno;
	}
	return rc;
}

/*
 * Make root the process's root (all threads: they share the namespace and
 * the fs struct). pivot_root, then the old root is detached. An initramfs
 * root (rootfs, as in a QEMU node) cannot be pivoted away from: the tmpfs
 * is moved over "/" and chrooted into instead (switch_root's way); the old
 * root stays below it, out of reach without CAP_SYS_CHROOT, which goes.
 */
static int root_switch(const char *root, char *err, size_t errlen)
{
	int old = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (old < 0 || chdir(root) < 0) {
		rc = -errno;
	} else if (syscall(SYS_pivot_root, ".", ".") == 0) {
		if (fchdir(old) < 0 || umount2(".", MNT_DETACH) < 0)
			rc = -errno;
	} else if (errno != EINVAL) {
		rc = -errno;
	} else if (mount(".", "/", NULL, MS_MOVE, NULL) < 0 ||
		   chroot(".") < 0) {
		rc = -errno;
	}
	if (old >= 0)
		close(old);
	if (rc == 0 && chdir("/") < 0)
		rc = -errno;
	if (rc < 0)
		snprintf(err, errlen, "jail: new root: %s", strerror(-rc));
	return rc;
}

/* Become uid:uid with no groups and no capabilities, for good. */
static int drop(uid_t uid, char *err, size_t errlen)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	const char *what = "capability bounding set";
	int cap;

	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			goto fail;
	what = "setgroups";
	if (setgroups(0, NULL) < 0)
		goto fail;
	what = "setresgid";
	if (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0)
		goto fail;
	what = "setresuid";
	if (setresuid(uid, uid, uid) < 0)
		goto fail;
	what = "no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		goto fail;
	what = "dumpable";
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		goto fail;
	/* Check, not trust: no way back to root and no capability left. */
	what = "capget";
	if (syscall(SYS_capget, &h, d) < 0)
		goto fail;
	if (syscall(SYS_setresuid, 0, 0, 0) == 0 || d[0].effective ||
	    d[0].permitted || d[0].inheritable || d[1].effective ||
	    d[1].permitted || d[1].inheritable) {
		snprintf(err, errlen,
			 "jail: privileges still held after the "
			 "drop");
		return -EPERM;
	}
	return 0;
fail:
	snprintf(err, errlen, "jail: %s: %s", what, strerror(errno));
	return -errno;
}

int vmm_jail_enter(struct vm *vm, char *err, size_t errlen)
{
	struct jail_plan *pl;
	const char *root = staging_dir();
	int rc;

	if (!vm->jail_pending)
		return 0;
	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	pl->uid = (uid_t)(VMM_JAIL_UID_BASE + (unsigned)getpid());
	rc = vm->cfg.jail_uid ? vmm_jail_uid_parse(vm->cfg.jail_uid, &pl->uid,
						   err, errlen) :
				0;
	rc = rc ?: keep_files(vm, pl->uid, err, errlen);
	rc = rc ?: plan_make(vm, pl, err, errlen);
	rc = rc ?: root_build(pl, root, err, errlen);
	for (unsigned i = 0; i < pl->n; i++)
		if (pl->b[i].fd >= 0)
			close(pl->b[i].fd);
	rc = rc ?: root_switch(root, err, errlen);
	/* Relative paths (--control control.sock) keep working. */
	if (rc == 0 && chdir(pl->cwd) < 0 && chdir("/") < 0)
		rc = -errno;
	rc = rc ?: drop(pl->uid, err, errlen);
	if (rc < 0 && vm->ctl_lfd >= 0) { /* the VMM does not start */
		sys_close(vm->ctl_lfd);
		vm->ctl_lfd = -1;
		(void)unlink(vm->cfg.control);
	}
	if (rc == 0) {
		vm->jail_pending = 0;
		log_info("vmm", "jailed", "vm=%s uid=%u gid=%u dir=%s binds=%u",
			 vm->cfg.name, (unsigned)pl->uid, (unsigned)pl->uid,
			 pl->n ? pl->b[0].path : "-", pl->n);
	}
	free(pl);
	return rc;
}
