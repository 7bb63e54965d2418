/* gai_log: an LD_PRELOAD shim for the integration tests that appends the
 * host name of every getaddrinfo call (libcurl's resolver threads make
 * them) to the file named by $GAI_LOG, then lets the call through: how
 * many name lookups the daemon starts can be counted. A name ending in
 * ".test" resolves to 127.0.0.1 (libcurl answers "localhost" itself,
 * without a lookup), after $GAI_DELAY_MS milliseconds when that is set: a
 * slow DNS server. */
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
			      struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static getaddrinfo_fn real;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "getaddrinfo");
		memcpy(&real, &sym, sizeof(real)); /* ISO C has no cast for it */
	}
	const char *path = getenv("GAI_LOG");
	if (path && node) {
		FILE *f = fopen(path, "a");
		if (f) {
			fprintf(f, "%s\n", node);
			fclose(f);
		}
	}
	size_t n = node ? strlen(node) : 0;
	if (n > 5 && !strcmp(node + n - 5, ".test")) {
		const char *delay = getenv("GAI_DELAY_MS");
		long ms = delay ? atol(delay) : 0;
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		while (ms > 0 && nanosleep(&ts, &ts))
			;
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
