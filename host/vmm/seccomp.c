/* Seccomp filter for the running VMM: only the system calls it needs. */
/* It goes on after the jail (jail.h), which needs nothing from it: the
 * mount, pivot and uid calls are made before and are not allowed here. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "host/vmm/vmm.h"

/* ioctl requests allowed: KVM's (type 0xAE) only. */
#define KVMIO_TYPE 0xAE
/* TCGETS, which stdio issues to decide on buffering. */
#define IOCTL_TCGETS 0x5401

static const int allowed[] = {
	SYS_read,
	SYS_write,
	SYS_pread64,
	SYS_pwrite64,
	SYS_readv,
	SYS_writev,
	SYS_preadv,
	SYS_pwritev,
	SYS_preadv2,
	SYS_pwritev2,
	SYS_openat, /* snapshots; in the jail only the VM's directory */
	SYS_close,
	SYS_fstat,
	SYS_newfstatat,
	SYS_lseek,
	SYS_mmap,
	SYS_munmap,
	SYS_mprotect,
	SYS_madvise,
	SYS_mremap,
	SYS_brk,
	SYS_rt_sigaction,
	SYS_rt_sigprocmask,
	SYS_rt_sigreturn,
	SYS_sigaltstack,
	SYS_futex,
	SYS_epoll_wait,
	SYS_epoll_pwait,
	SYS_epoll_ctl,
	SYS_accept4,
	SYS_sendmsg,
	SYS_connect, /* virtio-net: a unix datagram peer that started late */
	SYS_getsockopt, /* virtio-net: clear a socket's pending error */
	SYS_sendto,
	SYS_recvfrom,
	SYS_recvmsg,
	SYS_getpid,
	SYS_gettid,
	SYS_tgkill,
	SYS_exit,
	SYS_exit_group,
	SYS_clock_gettime,
	SYS_clock_nanosleep,
	SYS_nanosleep,
	SYS_poll,
	SYS_ppoll,
	SYS_clone,
	SYS_clone3,
	SYS_set_robust_list,
	SYS_rseq,
	SYS_rename,
	SYS_renameat,
	SYS_unlink,
	SYS_unlinkat,
	SYS_fsync,
	SYS_fdatasync,
	SYS_fallocate,
	SYS_getrandom,
	SYS_sched_yield,
	SYS_fcntl,
	SYS_prctl,
	SYS_sched_getaffinity,
	SYS_restart_syscall,
	SYS_shutdown, /* migration: end a stream being aborted */
	SYS_setsockopt, /* migration: TCP_NODELAY on the stream */
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the world at exit from a ptrace helper that
	 * lists /proc/PID/task with the legacy open and getdents. */
	SYS_ptrace,
	SYS_wait4,
	SYS_waitid,
	SYS_getppid,
	SYS_open,
	SYS_getdents,
	SYS_getdents64,
#endif
};

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	static const char pre[] = "canopy-vmm: seccomp: blocked system call ";
	char num[16];
	int n = 0, v = si->si_syscall;

	(void)sig;
	(void)uc;
	do {
		num[sizeof(num) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < 10);
	(void)!write(STDERR_FILENO, pre, sizeof(pre) - 1);
	(void)!write(STDERR_FILENO, num + sizeof(num) - n, (size_t)n);
	(void)!write(STDERR_FILENO, "; stopping the VM\n", 18);
	_exit(VMM_EXIT_CRASH);
}

/* Filter length: arch check and nr load (4), the ioctl rule (7), the
 * socket rule (7), two instructions per allowed call, the final trap. */
#define FILTER_MAX (4 + 7 + 7 + CN_ARRAY_SIZE(allowed) * 2 + 1)

int vmm_seccomp_install(void)
{
	struct sock_filter f[FILTER_MAX];
	struct sigaction sa = { .sa_sigaction = on_sigsys,
				.sa_flags = SA_SIGINFO };
	struct sock_fprog prog;
	unsigned n = 0;

#define STMT(c, v) (f[n++] = (struct sock_filter){ (c), 0, 0, (v) })
#define JUMP(c, v, t, e) (f[n++] = (struct sock_filter){ (c), (t), (e), (v) })
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	/* ioctl: KVM requests and TCGETS (stdio asks isatty) only. */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 6);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]));
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOCTL_TCGETS, 2, 0);
	STMT(BPF_ALU | BPF_AND | BPF_K, 0xff00);
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, KVMIO_TYPE << 8, 0, 1);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	/* socket: only the migration stream's (migrate_io.c mig_connect). */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 6);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 0, 3);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]));
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOCK_STREAM | SOCK_CLOEXEC, 0, 1);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	for (size_t i = 0; i < CN_ARRAY_SIZE(allowed); i++) {
		JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)allowed[i], 0, 1);
		STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	}
	STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
#undef STMT
#undef JUMP
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	prog.len = (unsigned short)n;
	prog.filter = f;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		    SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		return -errno;
	return 0;
}
