/*
 * sockfwd started as a service manager would (JOURNAL_STREAM, another
 * user), and python3 as a JSON checker. See spawn.h.
 */
#include "spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAWN_ARGS  64
#define PYTHON_MS   60000
#define JOURNAL_LEN 64

/* In the child: become o's user, set the environment, exec; never returns. */
static void spawn_child(char *const *args, int devnull, int out, int err, const char *journal,
			const struct spawn_opts *o, pid_t parent)
{
	sigset_t none;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(125);
	close_range(3, ~0u, 0);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (journal[0] != '\0' && setenv("JOURNAL_STREAM", journal, 1) < 0)
		_exit(125);
	if (o->as_user && (setgroups(0, NULL) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
			   setresuid(o->uid, o->uid, o->uid) < 0))
		_exit(124);
	execv(args[0], args);
	_exit(127);
}

void fwd_spawn_opts(struct fwd *f, const char *const *argv, const struct spawn_opts *o)
{
	char *args[SPAWN_ARGS], journal[JOURNAL_LEN] = "";
	pid_t parent = getpid();
	struct stat st;
	int devnull, n;

	args[0] = (char *)fwd_bin();
	sys_assert(access(args[0], X_OK) == 0, "sockfwd binary %s (set SOCKFWD_BIN)", args[0]);
	for (n = 1; argv[n] != NULL; n++) {
		cr_assert(n < SPAWN_ARGS - 1, "too many arguments");
		args[n] = (char *)argv[n];
	}
	args[n] = NULL;

	devnull = fwd_outputs(f);
	if (o->journal) {
		sys_assert(fstat(f->err_fd, &st) == 0, "fstat");
		snprintf(journal, sizeof(journal), "%llu:%llu", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
	}
	f->pid = fork();
	sys_assert(f->pid >= 0, "fork");
	if (f->pid == 0)
		spawn_child(args, devnull, f->out_fd, f->err_fd, journal, o, parent);
	close(devnull);
}

/* Write len bytes to a new /tmp file named after suffix; path into path. */
static void tmp_write(const char *buf, size_t len, const char *suffix, char *path, size_t plen)
{
	int fd;

	snprintf(path, plen, "/tmp/sockfwd-e2e-XXXXXX%s", suffix);
	fd = mkstemps(path, (int)strlen(suffix));
	sys_assert(fd >= 0, "mkstemps");
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, buf + off, len - off);

		sys_assert(w > 0, "write %s", path);
		off += (size_t)w;
	}
	close(fd);
}

void stderr_to_file(const struct fwd *f, char *path, size_t len)
{
	static char buf[1 << 22];
	size_t n = fwd_stderr(f, buf, sizeof(buf));

	cr_assert(n + 1 < sizeof(buf), "stderr larger than %zu bytes", sizeof(buf));
	tmp_write(buf, n, ".log", path, len);
}

int run_python(const char *script, const char *const *args, char *out, size_t outlen)
{
	char spath[64], *argv[SPAWN_ARGS];
	int mfd, devnull, st, n = 0, rc;
	pid_t pid, parent = getpid();
	uint64_t deadline;

	tmp_write(script, strlen(script), ".py", spath, sizeof(spath));
	argv[n++] = "python3";
	argv[n++] = spath;
	for (int i = 0; args[i] != NULL && n < SPAWN_ARGS - 1; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	mfd = memfd_create("python-out", MFD_CLOEXEC);
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sys_assert(mfd >= 0 && devnull >= 0, "memfd_create, /dev/null");
	pid = fork();
	sys_assert(pid >= 0, "fork");
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(125);
		if (dup2(devnull, 0) < 0 || dup2(mfd, 1) < 0 || dup2(mfd, 2) < 0)
			_exit(125);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(devnull);
	deadline = now_ms() + PYTHON_MS;
	for (int i = 0;; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		sys_assert(r >= 0, "waitpid");
		if (r == pid)
			break;
		if (now_ms() >= deadline || i > 1000000) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			unlink(spath);
			cr_assert_fail("python3 %s did not finish within %d ms", spath, PYTHON_MS);
		}
		sleep_ms(5);
	}
	unlink(spath);
	rc = (int)pread(mfd, out, outlen - 1, 0);
	out[rc > 0 ? rc : 0] = '\0';
	close(mfd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) == 127)
		return -1;
	return WEXITSTATUS(st);
}
