/* fail_wal: an LD_PRELOAD shim for the integration tests that makes writes
 * to SQLite's write-ahead log fail with ENOSPC (a full disk) while the file
 * named by $FAIL_WAL_TRIGGER exists, so that the daemon's handling of
 * database errors can be tested on the real binary: create the file, and
 * every transaction fails at its commit; remove it, and they succeed.
 * Likewise fdatasync of the log fails with EIO (a failing disk) while the
 * file named by $FAIL_WAL_SYNC_TRIGGER exists. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

/* True when fd is a "-wal" file and the file named by $var exists. */
static int should_fail(int fd, const char *var)
{
	const char *trigger = getenv(var);
	struct stat sb;
	if (!trigger || stat(trigger, &sb))
		return 0;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
	static pwrite_fn real;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "pwrite64");
		memcpy(&real, &sym, sizeof(real)); /* ISO C has no cast for it */
	}
	if (should_fail(fd, "FAIL_WAL_TRIGGER")) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, count, offset);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "fdatasync");
		memcpy(&real, &sym, sizeof(real));
	}
	if (should_fail(fd, "FAIL_WAL_SYNC_TRIGGER")) {
		errno = EIO;
		return -1;
	}
	return real(fd);
}
