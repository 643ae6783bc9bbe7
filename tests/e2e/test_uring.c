/*
 * -b uring where io_uring cannot be had: without URING=1 the build says it
 * lacks the engine; with it, a kernel that refuses io_uring_setup (ENOSYS:
 * missing, EPERM: kernel.io_uring_disabled or a seccomp policy) must give
 * exit 2 with a message naming the cause and suggesting -b splice. The
 * refusal is real: a seccomp filter in the child makes io_uring_setup fail.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define URING_EXIT_MS 10000

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Make io_uring_setup fail with err in this process and its exec'd image. */
static int deny_io_uring(int err)
{
#ifdef THIS_AUDIT_ARCH
	struct sock_filter filt[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(filt) / sizeof(filt[0]), .filter = filt };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
#else
	(void)err;
	return -ENOTSUP;
#endif
}

/*
 * Run sockfwd -b uring with io_uring_setup failing with deny_err (0: no
 * filter). Returns its exit status; its stderr lands in err.
 */
static int run_uring(int deny_err, char *err, size_t cap)
{
	char laddr[64], raddr[64];
	const char *argv[] = { fwd_bin(), "-b", "uring", "-l", laddr, "-r", raddr, NULL };
	int p[2], status = -1;
	size_t len = 0;
	uint64_t deadline;
	pid_t pid;

	loop_addr(laddr, sizeof(laddr), AF_INET, free_port(AF_INET));
	loop_addr(raddr, sizeof(raddr), AF_INET, free_port(AF_INET));
	cr_assert(pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		if (deny_err != 0 && deny_io_uring(deny_err) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(126);
	}
	close(p[1]);
	deadline = now_ms() + URING_EXIT_MS;
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		ssize_t n;

		if (now_ms() >= deadline || poll(&pfd, 1, (int)(deadline - now_ms())) <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(p[0]);
			cr_assert_fail("sockfwd -b uring did not exit within %d ms", URING_EXIT_MS);
		}
		n = read(p[0], err + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	err[len] = '\0';
	close(p[0]);
	cr_assert(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	cr_assert(WIFEXITED(status), "sockfwd -b uring died: status 0x%x; stderr:\n%s", status,
		  err);
	cr_assert(WEXITSTATUS(status) != 127, "could not install the seccomp filter");
	return WEXITSTATUS(status);
}

#ifdef SF_HAVE_URING

/* io_uring_setup failing with err gives exit 2 and a message with want. */
static void expect_refused(int err, const char *want)
{
	char msg[4096];
	int st = run_uring(err, msg, sizeof(msg));

	cr_assert_eq(st, 2, "io_uring_setup -> %s: exit %d, want 2; stderr:\n%s", strerror(err), st,
		     msg);
	cr_assert(strcasestr(msg, "io_uring") && strstr(msg, "-b splice"),
		  "message must name io_uring and suggest -b splice:\n%s", msg);
	cr_assert(strcasestr(msg, want), "message must name the cause (%s):\n%s", want, msg);
}

Test(uring, io_uring_missing_exits_2, .timeout = 60) { expect_refused(ENOSYS, strerror(ENOSYS)); }

Test(uring, io_uring_forbidden_exits_2, .timeout = 60) { expect_refused(EPERM, strerror(EPERM)); }

#else

Test(uring, not_compiled_in_exits_2, .timeout = 60)
{
	char msg[4096];
	int st = run_uring(0, msg, sizeof(msg));

	cr_assert_eq(st, 2, "-b uring without URING=1: exit %d, want 2; stderr:\n%s", st, msg);
	cr_assert(strstr(msg, "URING=1") != NULL, "message must say how to get the engine:\n%s",
		  msg);
}

#endif
