/* sleep_clock: an LD_PRELOAD shim for the integration tests that makes the
 * machine look as if it had been suspended: CLOCK_BOOTTIME reads ahead of
 * the real clock by the milliseconds written in the file named by
 * $SLEEP_CLOCK_FILE (none, or no file: no offset), while CLOCK_MONOTONIC,
 * which stops during a suspend, is left alone. Write "120000" to the file
 * and the daemon sees a two-minute sleep at its next check. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

/* The offset in ms from the file, 0 when there is none. */
static long long offset_ms(void)
{
	const char *path = getenv("SLEEP_CLOCK_FILE");
	FILE *f = path ? fopen(path, "r") : NULL;
	long long ms = 0;
	if (f) {
		if (fscanf(f, "%lld", &ms) != 1)
			ms = 0;
		fclose(f);
	}
	return ms;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	static clock_gettime_fn real;
	if (!real) {
		void *sym = dlsym(RTLD_NEXT, "clock_gettime");
		memcpy(&real, &sym, sizeof(real)); /* ISO C has no cast for it */
	}
	int rc = real(id, ts);
	if (rc || id != CLOCK_BOOTTIME)
		return rc;
	long long ms = offset_ms();
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
	return 0;
}
