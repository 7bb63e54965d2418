/* sockopts: an LD_PRELOAD shim for the integration tests that appends one
 * line per TCP keepalive setting a process makes ("TCP_KEEPIDLE 10",
 * "TCP_KEEPINTVL 5", "TCP_KEEPCNT 3") to the file named by $SOCKOPTS_LOG,
 * then lets the call through: how the daemon tunes keepalive can be read
 * back without strace. */
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	static setsockopt_fn real;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "setsockopt");
		memcpy(&real, &sym, sizeof(real)); /* ISO C has no cast for it */
	}
	const char *what = level != IPPROTO_TCP ? NULL
			   : name == TCP_KEEPIDLE ? "TCP_KEEPIDLE"
			   : name == TCP_KEEPINTVL ? "TCP_KEEPINTVL"
			   : name == TCP_KEEPCNT ? "TCP_KEEPCNT" : NULL;
	const char *path = getenv("SOCKOPTS_LOG");
	if (what && path && len == sizeof(int)) {
		FILE *f = fopen(path, "a");
		if (f) {
			int v;
			memcpy(&v, val, sizeof(v));
			fprintf(f, "%s %d\n", what, v);
			fclose(f);
		}
	}
	return real(fd, level, name, val, len);
}
