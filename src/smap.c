/* smap: chained hash map with string keys (see smap.h). */
#include "botfactory/smap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "botfactory/util.h"

struct smap_entry {
	struct smap_entry *next;
	void *value;
	uint64_t hash;
	char key[]; /* NUL-terminated */
};

static uint64_t hash_str(const char *s)
{
	return util_fnv1a(UTIL_FNV_OFFSET, s, strlen(s));
}

static struct smap_entry **slot(const struct smap *m, const char *key, uint64_t h)
{
	struct smap_entry **p = &m->buckets[h % m->nbuckets];
	while (*p && ((*p)->hash != h || strcmp((*p)->key, key)))
		p = &(*p)->next;
	return p;
}

void *smap_get(const struct smap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	struct smap_entry *e = *slot(m, key, hash_str(key));
	return e ? e->value : NULL;
}

static int grow(struct smap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
	struct smap_entry **b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct smap_entry *e = m->buckets[i], *next; e; e = next) {
			next = e->next;
			e->next = b[e->hash % n];
			b[e->hash % n] = e;
		}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

int smap_put(struct smap *m, const char *key, void *value)
{
	if (m->n >= m->nbuckets && grow(m))
		return -ENOMEM;
	uint64_t h = hash_str(key);
	struct smap_entry **p = slot(m, key, h);
	if (*p) {
		(*p)->value = value;
		return 0;
	}
	size_t len = strlen(key);
	struct smap_entry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->value = value;
	e->hash = h;
	memcpy(e->key, key, len + 1);
	*p = e;
	m->n++;
	return 0;
}

void *smap_del(struct smap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	struct smap_entry **p = slot(m, key, hash_str(key));
	struct smap_entry *e = *p;
	if (!e)
		return NULL;
	void *v = e->value;
	*p = e->next;
	free(e);
	m->n--;
	return v;
}

void smap_each(const struct smap *m, void (*fn)(const char *key, void *value, void *arg),
	       void *arg)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct smap_entry *e = m->buckets[i]; e; e = e->next)
			fn(e->key, e->value, arg);
}

void smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct smap_entry *e = m->buckets[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}
