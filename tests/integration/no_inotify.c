/* no_inotify: an LD_PRELOAD shim for the integration tests that makes
 * every inotify watch fail as if the system's watch limit
 * (fs.inotify.max_user_watches) were reached, so that the daemon's
 * fallback (rescanning the specs directory on a timer) can be tested
 * without touching the machine's limits. */
#include <errno.h>
#include <stdint.h>
#include <sys/inotify.h>

int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
	(void)fd;
	(void)path;
	(void)mask;
	errno = ENOSPC;
	return -1;
}
