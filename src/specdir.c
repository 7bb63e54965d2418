/* specdir: watching the specs directory and rescanning it off the loop
 * (see specdir.h). The loop owns the table of known files; a rescan works
 * on a copy in the thread pool and returns a new table and the changes. */
#include "botfactory/specdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "botfactory/buf.h"
#include "botfactory/log.h"
#include "botfactory/specfile.h"
#include "botfactory/util.h"

struct known {
	char *name;     /* file name in the directory */
	char id[SPEC_MAX_ID_LEN + 8];
	int64_t mtime_ns;
	int64_t size;
	uint64_t ino;
	char hash[24];  /* of the content, hex */
};

struct change {
	char id[SPEC_MAX_ID_LEN + 8];
	char *path;
	char hash[24];
	struct spec *spec; /* or NULL with error */
	char *error;       /* one-line summary */
	char *log;         /* every error line, for the log */
};

/* What tells one directory from another at the same path: a directory
 * removed and made again at once can get the old inode number back, and
 * the old one's watch is dead; the birth time (where the file system keeps
 * one) tells them apart. */
struct dir_id {
	uint64_t dev, ino;
	int64_t btime_ns; /* 0: not kept by the file system */
};

struct scan {
	uv_work_t work;
	struct specdir *sd;
	bool full;
	/* in */
	struct known *old;
	size_t nold;
	/* out */
	struct known *files;
	size_t nfiles;
	struct change *changes;
	size_t nchanges;
	char **removed; /* ids */
	size_t nremoved;
	int err;        /* errno of the directory itself, 0 = fine */
	bool oom;       /* the scan ran out of memory: its result means nothing */
	int64_t started_ns; /* wall clock, to compare with mtimes */
	struct dir_id dir;
};

struct specdir {
	uv_loop_t *loop;
	char *dir;
	struct registry *reg;
	uv_fs_event_t watch;
	uv_timer_t debounce, periodic;
	bool watching;
	bool fallback;        /* no watch possible: periodic rescans */
	bool missing_logged;
	struct known *files;
	size_t nfiles;
	struct dir_id id;     /* of the watched directory */
	struct scan *scan;    /* in progress */
	bool dirty, dirty_full;
	bool first_done;
	void (*first)(void *arg, unsigned nfiles);
	void *first_arg;
	uv_work_t trim;       /* malloc_trim after a rescan, on the pool */
	bool trimming;
	int handles;
	bool closing;
	void (*closed)(void *arg);
	void *closed_arg;
};

static void schedule(struct specdir *sd, bool full);
static void start_scan(struct specdir *sd);

/* ---- the thread-pool side ----------------------------------------------- */

static void hash_hex(const char *data, size_t len, char out[24])
{
	snprintf(out, 24, "%016" PRIx64, util_fnv1a(UTIL_FNV_OFFSET, data, len));
}

static const struct known *find_known(const struct known *v, size_t n, const char *name)
{
	for (size_t lo = 0, hi = n; lo < hi;) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(v[mid].name, name);
		if (!c)
			return &v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int candidate(const struct dirent *e)
{
	return specfile_candidate(e->d_name);
}

static int add_change(struct scan *s, const char *id, const char *path, const char *hash,
		      struct spec *spec, char *error, char *log)
{
	struct change *v = realloc(s->changes, (s->nchanges + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->changes = v;
	struct change *c = &v[s->nchanges++];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->path = strdup(path);
	snprintf(c->hash, sizeof(c->hash), "%s", hash);
	c->spec = spec;
	c->error = error;
	c->log = log;
	return c->path ? 0 : -ENOMEM;
}

/* Reads, hashes and (if the content changed) compiles one file. */
static void scan_file(struct scan *s, const char *path, struct known *k,
		      const struct known *old)
{
	struct diags d = {0};
	struct spec *spec = NULL;
	struct buf data = BUF_INIT;
	/* (never blocks: a FIFO put in the file's place since it was listed is
	 * refused, not waited on) */
	int rc = specfile_read(path, &data, &d);
	/* a file that could not be read, or that changed in the last second
	 * (a rewrite of the same size in the same clock tick keeps its stat),
	 * is read again by the next scan rather than trusted by its stat */
	if ((rc && rc != -EFBIG) || k->mtime_ns >= s->started_ns - 1000000000)
		k->mtime_ns = -1;
	hash_hex(data.data ? data.data : "", data.len, k->hash);
	if (old && !s->full && !strcmp(old->hash, k->hash)) {
		buf_free(&data); /* touched, not changed */
		diags_free(&d);
		return;
	}
	if (!rc)
		rc = spec_compile(k->id, data.data ? data.data : "", data.len, &spec, &d);
	buf_free(&data);
	char *error = NULL, *log = NULL;
	if (rc) {
		struct buf e = BUF_INIT, l = BUF_INIT;
		diags_sort(&d);
		for (size_t i = 0; i < d.n; i++) {
			if (d.v[i].line)
				buf_printf(&l, "%s%s:%d:%d: %s", i ? "\n" : "", path, d.v[i].line,
					   d.v[i].col, d.v[i].msg);
			else
				buf_printf(&l, "%s%s: %s", i ? "\n" : "", path, d.v[i].msg);
		}
		if (d.n && d.v[0].line)
			buf_printf(&e, "%s:%d:%d: %s", path, d.v[0].line, d.v[0].col, d.v[0].msg);
		else if (d.n)
			buf_printf(&e, "%s: %s", path, d.v[0].msg);
		else
			buf_printf(&e, "%s: out of memory", path);
		if (d.n > 1)
			buf_printf(&e, " (and %zu more error%s)", d.n - 1, d.n > 2 ? "s" : "");
		error = buf_take(&e);
		log = buf_take(&l);
	}
	diags_free(&d);
	if (add_change(s, k->id, path, k->hash, spec, error, log)) {
		spec_free(spec);
		free(error);
		free(log);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index of the file that first defines each id: files are in name order,
 * so for equal ids the smaller index wins. */
static int cmp_id_then_index(const void *a, const void *b, void *arg)
{
	const struct known *f = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(f[x].id, f[y].id);
	return c ? c : (x > y) - (x < y);
}

/* Fills id for the directory at path. Returns 0 or an errno (ENOTDIR
 * when it is not a directory). */
static int dir_identity(const char *path, struct dir_id *id)
{
	struct statx sx;
	if (statx(AT_FDCWD, path, 0, STATX_TYPE | STATX_INO | STATX_BTIME, &sx))
		return errno ? errno : EIO;
	if (!S_ISDIR(sx.stx_mode))
		return ENOTDIR;
	id->dev = (uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor;
	id->ino = sx.stx_ino;
	id->btime_ns = sx.stx_mask & STATX_BTIME
			       ? (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec
			       : 0;
	return 0;
}

static void scan_work(uv_work_t *w)
{
	struct scan *s = w->data;
	const char *dir = s->sd->dir;
	struct stat st;
	struct dirent **names = NULL;
	bool *dup = NULL;
	size_t *order = NULL;
	char **ids = NULL;
	int n = 0;
	s->started_ns = util_clock_ms(CLOCK_REALTIME) * 1000000;
	if ((s->err = dir_identity(dir, &s->dir)))
		goto removed;
	n = scandir(dir, &names, candidate, by_name);
	if (n < 0) {
		s->err = errno;
		n = 0;
		goto removed;
	}
	/* pass 1: stat every candidate */
	s->files = calloc(n ? (size_t)n : 1, sizeof(*s->files));
	if (!s->files) {
		s->oom = true;
		goto removed;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct known *k = &s->files[s->nfiles];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) || !S_ISREG(st.st_mode) ||
		    specfile_id(names[i]->d_name, k->id, sizeof(k->id)) ||
		    !(k->name = strdup(names[i]->d_name)))
			continue;
		k->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		k->size = (int64_t)st.st_size;
		k->ino = (uint64_t)st.st_ino;
		s->nfiles++;
	}
	/* two files, one id (a.yaml and a.json): the first in name order counts */
	dup = calloc(s->nfiles ? s->nfiles : 1, sizeof(*dup));
	order = calloc(s->nfiles ? s->nfiles : 1, sizeof(*order));
	if (!dup || !order) {
		s->oom = true;
		goto removed;
	}
	for (size_t i = 0; i < s->nfiles; i++)
		order[i] = i;
	qsort_r(order, s->nfiles, sizeof(*order), cmp_id_then_index, s->files);
	for (size_t i = 1; i < s->nfiles; i++)
		dup[order[i]] = !strcmp(s->files[order[i]].id, s->files[order[i - 1]].id);
	/* pass 2: read what changed */
	for (size_t i = 0; i < s->nfiles; i++) {
		struct known *k = &s->files[i];
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, k->name);
		const struct known *o = find_known(s->old, s->nold, k->name);
		if (dup[i]) {
			if (!o || s->full) {
				struct buf e = BUF_INIT;
				char *err = NULL, *log = NULL;
				if (!buf_printf(&e, "%s: ignored: another file already defines bot '%s'",
						path, k->id)) {
					err = buf_take(&e);
					log = err ? strdup(err) : NULL;
				}
				buf_free(&e);
				if (add_change(s, k->id, path, "", NULL, err, log)) {
					free(err);
					free(log);
				}
			}
			/* remembered as not loaded, so that it is read and
			 * compiled once it counts (the first file gone) */
			k->hash[0] = '\0';
			k->mtime_ns = -1;
			continue;
		}
		if (o && !s->full && o->mtime_ns == k->mtime_ns && o->size == k->size &&
		    o->ino == k->ino && !strcmp(o->id, k->id)) {
			snprintf(k->hash, sizeof(k->hash), "%s", o->hash);
			continue; /* unchanged by its stat: not even read */
		}
		scan_file(s, path, k, o);
	}
removed:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	/* ids of old files that no file defines any more (not known after
	 * running out of memory: nothing is removed then) */
	ids = s->oom ? NULL : calloc(s->nfiles ? s->nfiles : 1, sizeof(*ids));
	s->oom = s->oom || !ids;
	if (ids) {
		for (size_t i = 0; i < s->nfiles; i++)
			ids[i] = s->files[i].id;
		qsort(ids, s->nfiles, sizeof(*ids), cmp_str);
	}
	for (size_t i = 0; ids && i < s->nold; i++) {
		const char *id = s->old[i].id;
		if (s->nfiles && bsearch(&id, ids, s->nfiles, sizeof(*ids), cmp_str))
			continue;
		char **v = realloc(s->removed, (s->nremoved + 1) * sizeof(*v));
		if (!v)
			break;
		s->removed = v;
		if ((v[s->nremoved] = strdup(id)))
			s->nremoved++;
	}
	free(ids);
	free(dup);
	free(order);
}

/* ---- the loop side -------------------------------------------------------- */

static void known_free(struct known *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static void scan_free(struct scan *s)
{
	known_free(s->old, s->nold);
	known_free(s->files, s->nfiles);
	for (size_t i = 0; i < s->nchanges; i++) {
		free(s->changes[i].path);
		free(s->changes[i].error);
		free(s->changes[i].log);
		spec_free(s->changes[i].spec);
	}
	free(s->changes);
	for (size_t i = 0; i < s->nremoved; i++)
		free(s->removed[i]);
	free(s->removed);
	free(s);
}

static void on_event(uv_fs_event_t *h, const char *name, int events, int status);

/* Drops one of the specdir's handles (loop handles and the scan in
 * progress); the last one frees it. */
static void release(struct specdir *sd)
{
	if (--sd->handles)
		return;
	void (*closed)(void *) = sd->closed;
	void *arg = sd->closed_arg;
	known_free(sd->files, sd->nfiles);
	free(sd->dir);
	free(sd);
	if (closed)
		closed(arg);
}

/* (Re)starts the inotify watch when it is missing or the directory is not
 * the one watched any more. A file made before the new watch existed sends
 * no event: with `rescan`, one more rescan follows a (re)started watch. */
static void ensure_watch(struct specdir *sd, const struct dir_id *id, bool rescan)
{
	if (sd->watching && sd->id.dev == id->dev && sd->id.ino == id->ino &&
	    sd->id.btime_ns == id->btime_ns)
		return;
	if (sd->watching) {
		uv_fs_event_stop(&sd->watch);
		sd->watching = false;
	}
	sd->id = *id;
	int rc = uv_fs_event_start(&sd->watch, on_event, sd->dir, 0);
	if (rc) {
		if (!sd->fallback)
			log_warn("cannot watch %s (%s): rescanning it every %d s instead",
				 sd->dir, uv_strerror(rc), SPECDIR_FALLBACK_MS / 1000);
		sd->fallback = true;
		return;
	}
	if (sd->fallback)
		log_info("watching %s again", sd->dir);
	sd->fallback = false;
	sd->watching = true;
	if (rescan)
		sd->dirty = true;
}

static void on_periodic(uv_timer_t *t);

#ifdef __GLIBC__
/* A rescan allocates on a pool thread, in that thread's glibc arena, and
 * the loop frees it (the replaced specs, the last file table): small
 * chunks freed by another thread wait unmerged in the arena's fastbins,
 * and an arena other than the main one only gives back memory at its
 * top, so each pool thread's arena kept a fleet's worth of free memory
 * and the RSS crept up with every rescan (1,000 bots: +9 MiB after 100
 * SIGHUPs). malloc_trim merges and returns it. It runs on the pool: with
 * 10,000 bots it takes 12-19 ms, too long for the loop. Pages held by the
 * threads' malloc caches (tcache) stay. */
static void trim_work(uv_work_t *w)
{
	(void)w;
	malloc_trim(0);
}

static void trim_after(uv_work_t *w, int status)
{
	(void)status;
	struct specdir *sd = w->data;
	sd->trimming = false;
	release(sd);
}

static void trim_soon(struct specdir *sd)
{
	if (sd->trimming || sd->closing)
		return;
	sd->trim.data = sd;
	if (uv_queue_work(sd->loop, &sd->trim, trim_work, trim_after))
		return; /* only memory is at stake: the next rescan tries again */
	sd->trimming = true;
	sd->handles++;
}
#endif

static void scan_after(uv_work_t *w, int status)
{
	struct scan *s = w->data;
	struct specdir *sd = s->sd;
	sd->scan = NULL;
	if (status || sd->closing) {
		scan_free(s);
		release(sd);
		return;
	}
	sd->handles--;
	if (s->oom) { /* a partial picture: change nothing, try again */
		log_error("rescanning %s ran out of memory: nothing changed; retrying in %d s",
			  sd->dir, SPECDIR_FALLBACK_MS / 1000);
		sd->dirty_full = sd->dirty_full || s->full;
		scan_free(s);
		uv_timer_start(&sd->periodic, on_periodic, SPECDIR_FALLBACK_MS, 0);
		return;
	}
	if (s->err) {
		if (!sd->missing_logged)
			log_error("the specs directory %s cannot be read (%s): its bots stop; waiting for it to come back",
				  sd->dir, strerror(s->err));
		sd->missing_logged = true;
		if (sd->watching) {
			uv_fs_event_stop(&sd->watch);
			sd->watching = false;
		}
	} else {
		if (sd->missing_logged)
			log_info("the specs directory %s is back", sd->dir);
		sd->missing_logged = false;
		ensure_watch(sd, &s->dir, true);
	}
	for (size_t i = 0; i < s->nchanges; i++) {
		struct change *c = &s->changes[i];
		if (c->log) {
			for (char *line = strtok(c->log, "\n"); line; line = strtok(NULL, "\n"))
				log_error("%s", line);
		}
		registry_load(sd->reg, c->id, c->path, c->hash, c->spec, c->error);
		c->spec = NULL;
	}
	for (size_t i = 0; i < s->nremoved; i++)
		registry_unload(sd->reg, s->removed[i]);
	known_free(sd->files, sd->nfiles);
	sd->files = s->files;
	sd->nfiles = s->nfiles;
	s->files = NULL;
	s->nfiles = 0;
	unsigned found = (unsigned)sd->nfiles;
	scan_free(s);
#ifdef __GLIBC__
	trim_soon(sd);
#endif
	/* the next slow rescan: quick while the directory is missing or not
	 * watched, else only to catch dropped events */
	uv_timer_start(&sd->periodic, on_periodic,
		       sd->watching ? SPECDIR_PERIODIC_MS : SPECDIR_FALLBACK_MS, 0);
	if (!sd->first_done) {
		sd->first_done = true;
		if (sd->first)
			sd->first(sd->first_arg, found);
	}
	if (sd->dirty)
		schedule(sd, sd->dirty_full);
}

static void start_scan(struct specdir *sd)
{
	if (sd->scan || sd->closing)
		return;
	struct scan *s = calloc(1, sizeof(*s));
	if (!s)
		goto retry;
	s->sd = sd;
	s->full = sd->dirty_full;
	s->work.data = s;
	s->old = calloc(sd->nfiles ? sd->nfiles : 1, sizeof(*s->old));
	if (!s->old)
		goto retry;
	for (size_t i = 0; i < sd->nfiles; i++) {
		s->old[i] = sd->files[i];
		if (!(s->old[i].name = strdup(sd->files[i].name)))
			goto retry;
		s->nold++;
	}
	sd->dirty = sd->dirty_full = false;
	if (uv_queue_work(sd->loop, &s->work, scan_work, scan_after))
		goto retry;
	sd->scan = s;
	sd->handles++;
	return;
retry:
	if (s)
		scan_free(s);
	log_error("cannot rescan %s now (out of memory): retrying", sd->dir);
	uv_timer_start(&sd->periodic, on_periodic, SPECDIR_FALLBACK_MS, 0);
}

static void on_debounce(uv_timer_t *t)
{
	struct specdir *sd = t->data;
	if (sd->scan) {
		sd->dirty = true; /* rescan again when this one is done */
		return;
	}
	start_scan(sd);
}

/* Asks for a rescan soon; bursts of events make one rescan. */
static void schedule(struct specdir *sd, bool full)
{
	sd->dirty = true;
	sd->dirty_full = sd->dirty_full || full;
	if (sd->scan || uv_is_active((uv_handle_t *)&sd->debounce))
		return;
	uv_timer_start(&sd->debounce, on_debounce, SPECDIR_DEBOUNCE_MS, 0);
}

static void on_periodic(uv_timer_t *t)
{
	schedule(t->data, false);
}

/* Every event counts (a Kubernetes ConfigMap swaps a hidden ..data
 * symlink): the rescan decides what changed. */
static void on_event(uv_fs_event_t *h, const char *name, int events, int status)
{
	(void)name;
	(void)events;
	struct specdir *sd = h->data;
	if (status < 0) {
		log_warn("watching %s failed (%s): rescanning", sd->dir, uv_strerror(status));
		uv_fs_event_stop(&sd->watch);
		sd->watching = false;
	}
	schedule(sd, false);
}

void specdir_rescan(struct specdir *sd, bool full)
{
	schedule(sd, full);
}

int specdir_start(uv_loop_t *loop, const char *dir, struct registry *reg,
		  void (*first)(void *arg, unsigned nfiles), void *arg,
		  struct specdir **out)
{
	struct dir_id id;
	int rc = dir_identity(dir, &id);
	if (rc)
		return -rc;
	struct specdir *sd = calloc(1, sizeof(*sd));
	if (!sd || !(sd->dir = strdup(dir))) {
		free(sd);
		return -ENOMEM;
	}
	sd->loop = loop;
	sd->reg = reg;
	sd->first = first;
	sd->first_arg = arg;
	uv_fs_event_init(loop, &sd->watch);
	uv_timer_init(loop, &sd->debounce);
	uv_timer_init(loop, &sd->periodic);
	sd->watch.data = sd->debounce.data = sd->periodic.data = sd;
	sd->handles = 3;
	/* the watch first: a file made while the first scan runs sends an
	 * event, instead of waiting for the periodic rescan */
	ensure_watch(sd, &id, false);
	sd->dirty = true;
	start_scan(sd);
	*out = sd;
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	release(h->data);
}

void specdir_stop(struct specdir *sd, void (*closed)(void *arg), void *arg)
{
	sd->closing = true;
	sd->closed = closed;
	sd->closed_arg = arg;
	if (sd->watching)
		uv_fs_event_stop(&sd->watch);
	uv_close((uv_handle_t *)&sd->watch, handle_closed);
	uv_close((uv_handle_t *)&sd->debounce, handle_closed);
	uv_close((uv_handle_t *)&sd->periodic, handle_closed);
	if (sd->scan)
		uv_cancel((uv_req_t *)&sd->scan->work); /* or it finishes first */
}
