/* smap: a small hash map from NUL-terminated string keys to pointers, for
 * the registry's lookups by bot id and by token (O(1) where a list would
 * make start-up with 10,000 bots quadratic). Keys are copied; values are
 * the caller's. Not thread-safe. */
#ifndef BOTFACTORY_SMAP_H
#define BOTFACTORY_SMAP_H

#include <stddef.h>

struct smap_entry;

struct smap {
	struct smap_entry **buckets;
	size_t nbuckets, n;
};

#define SMAP_INIT {NULL, 0, 0}

/* The value stored under key, or NULL. */
void *smap_get(const struct smap *m, const char *key);
/* Stores value under key (replacing). Returns 0 or -ENOMEM. */
int smap_put(struct smap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *smap_del(struct smap *m, const char *key);
/* Calls fn for every entry (the map must not change meanwhile). */
void smap_each(const struct smap *m, void (*fn)(const char *key, void *value, void *arg),
	       void *arg);
void smap_free(struct smap *m);

#endif
