/* specdir: the specs directory, watched. uv_fs_event on the directory (not
 * on each file: editors save by writing a temp file and renaming it) sets a
 * short debounce timer; then a rescan runs on libuv's thread pool: it
 * stats every candidate file, reads and hashes the ones whose stat changed,
 * compiles the ones whose content changed, and hands the differences to the
 * registry on the loop. A slow periodic rescan catches events the kernel
 * dropped; a directory that is replaced, removed or recreated is watched
 * again; without inotify (limits) periodic rescans take over. */
#ifndef BOTFACTORY_SPECDIR_H
#define BOTFACTORY_SPECDIR_H

#include <stdbool.h>

#include <uv.h>

#include "botfactory/registry.h"

struct specdir;

/* How soon after the first event of a burst the rescan runs. */
#define SPECDIR_DEBOUNCE_MS 20
/* Rescans without events: to catch dropped events, or instead of them. */
#define SPECDIR_PERIODIC_MS 30000
#define SPECDIR_FALLBACK_MS 2000

/* Starts watching dir (copied) for reg (borrowed) and runs the first scan;
 * `first` (may be NULL) is called once the first scan has been applied,
 * with the number of spec files found. Returns 0, or a negative errno when
 * the directory cannot be read at all (then nothing is started). */
int specdir_start(uv_loop_t *loop, const char *dir, struct registry *reg,
		  void (*first)(void *arg, unsigned nfiles), void *arg,
		  struct specdir **out);

/* Rescans now (SIGHUP); with full, every file is read and hashed again. */
void specdir_rescan(struct specdir *sd, bool full);

/* Stops watching; `closed` runs once every handle and the rescan in
 * progress are done. */
void specdir_stop(struct specdir *sd, void (*closed)(void *arg), void *arg);

#endif
