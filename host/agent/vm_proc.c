/* canopy-agent: VMM processes: spawn, watch through a pidfd, reap, kill,
 * and why they stopped. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/vmmctl.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

static int pidfd_open_(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : (int)fd;
}

void agent_vmm_log_mark(struct agent_vm *vm)
{
	vm->log_mark = agent_log_size(vm->dir);
}

/* Why the process ended, for a child whose wait status we have. */
static void child_reason(struct agent_vm *vm, int st)
{
	char logr[256];
	int have = agent_log_reason(vm->dir, vm->log_mark, logr,
				    sizeof(logr)) == 0;

	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && have)
		snprintf(vm->reason, sizeof(vm->reason), "%s", logr);
	else if (WIFEXITED(st) && have)
		snprintf(vm->reason, sizeof(vm->reason),
			 "%s (canopy-vmm exit status %d)", logr,
			 WEXITSTATUS(st));
	else if (WIFEXITED(st))
		snprintf(vm->reason, sizeof(vm->reason),
			 "canopy-vmm exited with status %d", WEXITSTATUS(st));
	else
		snprintf(vm->reason, sizeof(vm->reason),
			 "canopy-vmm was killed by signal %d (%s)",
			 WTERMSIG(st), strsignal(WTERMSIG(st)));
}

static void on_exit_fd(struct loop *l, int fd, unsigned mask, void *arg)
{
	struct agent_vm *vm = arg;
	struct agent *ag = vm->ag;
	int st = 0;

	loop_fd_del(l, fd, LOOP_READ);
	sys_close(fd);
	vm->pidfd = -1;
	vm->exit_status = -1;
	if (vm->is_child && waitpid(vm->pid, &st, 0) == vm->pid) {
		child_reason(vm, st);
		vm->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) :
						  128 + WTERMSIG(st);
	} else if (agent_log_reason(vm->dir, vm->log_mark, vm->reason,
				    sizeof(vm->reason)) < 0) {
		snprintf(vm->reason, sizeof(vm->reason),
			 "canopy-vmm (pid %d) exited", (int)vm->pid);
	}
	log_info("agent", "vmm exited", "vm=%s pid=%d reason=\"%s\"", vm->id,
		 (int)vm->pid, vm->reason);
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED;
	vm->pid = 0;
	agent_vm_ds_release(ag, vm);
	vm->rss_bytes = vm->uptime_ms = 0;
	if (vm->stats_call) {
		vmmctl_call_cancel(vm->stats_call);
		vm->stats_call = NULL;
		agent_stats_call_done(ag);
	}
	if (agent_migrate_exited(ag, vm))
		return; /* a migration's VMM: migrate.c decides */
	agent_power_exited(ag, vm);
	agent_vm_report(ag, vm);
}

int agent_vmm_watch(struct agent *ag, struct agent_vm *vm, pid_t pid,
		    int is_child)
{
	int fd = pidfd_open_(pid), rc;

	if (fd < 0)
		return fd;
	rc = loop_fd_add(ag->loop, fd, LOOP_READ, on_exit_fd, vm);
	if (rc < 0) {
		sys_close(fd);
		return rc;
	}
	vm->pid = pid;
	vm->pidfd = fd;
	vm->is_child = is_child;
	return 0;
}

void agent_vmm_kill(struct agent_vm *vm)
{
	/* Through the pidfd: never a recycled pid. canopy-vmm has threads,
	 * no child processes, so the process is all there is to kill. */
	if (vm->pidfd >= 0 &&
	    syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0) < 0)
		log_warn("agent", "cannot kill the vmm",
			 "vm=%s pid=%d err=\"%s\"", vm->id, (int)vm->pid,
			 cn_strerror(-errno));
}

/* In the child: only async-signal-safe calls until exec. */
static CN_NORETURN void child_exec(char **argv, const char *dir, int logfd)
{
	static const char nope[] = "canopy-agent: cannot exec canopy-vmm\n";
	sigset_t all;
	int nul = open("/dev/null", O_RDONLY);

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	(void)setsid();
	if (nul >= 0)
		dup2(nul, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	syscall(SYS_close_range, 3, ~0U, 0);
	if (chdir(dir) == 0)
		execv(argv[0], argv);
	(void)!write(2, nope, sizeof(nope) - 1);
	_exit(127);
}

int agent_vmm_spawn(struct agent *ag, struct agent_vm *vm, char *msg,
		    size_t len)
{
	struct agent_argv av;
	char path[AGENT_PATH_MAX + 16];
	int logfd, rc;
	pid_t pid;

	rc = agent_vm_uid_pick(ag, vm, msg, len);
	if (rc < 0)
		return rc;
	rc = agent_vmm_argv_build(ag->opts.vmm, vm->dir, vm->id, vm->spec,
				  vm->ds, &av);
	if (rc == 0)
		rc = agent_migrate_argv(vm, &av);
	if (rc == 0 && vm->jail_uid) {
		char uid[16];

		snprintf(uid, sizeof(uid), "%u", vm->jail_uid);
		rc = agent_argv_add(&av, "--jail-uid") ?:
							 agent_argv_add(&av, uid);
	}
	if (rc < 0) {
		snprintf(msg, len,
			 "cannot build the canopy-vmm command line: %s",
			 cn_strerror(rc));
		goto out_argv;
	}
	snprintf(path, sizeof(path), "%s/vmm.log", vm->dir);
	logfd = sys_open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	agent_vmm_log_mark(vm); /* this run's lines come after */
	if (logfd < 0) {
		rc = logfd;
		snprintf(msg, len, "cannot open %s: %s", path, cn_strerror(rc));
		goto out_argv;
	}
	pid = fork();
	if (pid == 0)
		child_exec(av.v, vm->dir, logfd);
	rc = pid < 0 ? -errno : 0;
	sys_close(logfd);
	if (rc < 0) {
		snprintf(msg, len, "fork: %s", cn_strerror(rc));
		goto out_argv;
	}
	rc = agent_vmm_watch(ag, vm, pid, 1);
	if (rc < 0) {
		snprintf(msg, len, "pidfd_open: %s", cn_strerror(rc));
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		goto out_argv;
	}
	log_info("agent", "vmm started", "vm=%s pid=%d", vm->id, (int)pid);
out_argv:
	agent_argv_free(&av);
	return rc;
}
