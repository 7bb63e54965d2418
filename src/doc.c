/* doc: builds a position-annotated tree from libyaml's event stream. The
 * tree is small and short-lived: the spec compiler walks it once and frees it. */
#include "botfactory/doc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "botfactory/buf.h"

int diags_add(struct diags *d, int line, int col, const char *fmt, ...)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct diag *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (rc) {
		buf_free(&b);
		return rc;
	}
	d->v[d->n].line = line;
	d->v[d->n].col = col;
	d->v[d->n].msg = b.data;
	d->n++;
	return 0;
}

static int diag_cmp(const struct diag *a, const struct diag *b)
{
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return 0;
}

void diags_sort(struct diags *d)
{
	/* insertion sort: stable, and error lists are short */
	for (size_t i = 1; i < d->n; i++) {
		struct diag x = d->v[i];
		size_t j = i;
		while (j > 0 && diag_cmp(&d->v[j - 1], &x) > 0) {
			d->v[j] = d->v[j - 1];
			j--;
		}
		d->v[j] = x;
	}
}

void diags_free(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].msg);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

void doc_free(struct doc_node *n)
{
	if (!n)
		return;
	size_t count = n->kind == DOC_MAP ? 2 * n->n : n->n;
	for (size_t i = 0; i < count; i++)
		doc_free(n->items[i]);
	free(n->items);
	free(n->str);
	free(n);
}

bool doc_is_null(const struct doc_node *n)
{
	if (!n || n->kind != DOC_SCALAR || !n->plain)
		return false;
	return n->len == 0 || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
	       !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

struct doc_node *doc_map_get(const struct doc_node *map, const char *key)
{
	if (!map || map->kind != DOC_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (!strcmp(map->items[2 * i]->str, key))
			return map->items[2 * i + 1];
	return NULL;
}

const char *doc_kind_name(const struct doc_node *n)
{
	if (!n)
		return "nothing";
	switch (n->kind) {
	case DOC_SEQ:
		return "a list";
	case DOC_MAP:
		return "a mapping";
	case DOC_SCALAR:
		break;
	}
	return doc_is_null(n) ? "empty" : "a string";
}

struct parser {
	const char *data;
	size_t len;
	yaml_parser_t yp;
	yaml_event_t ev;
	bool have_ev;
	struct diags *d;
	int rc; /* first hard error */
};

/* The byte at 0-based (line, column in characters) of the input, or 0. */
static char char_at(const struct parser *p, size_t line, size_t col)
{
	size_t i = 0;
	for (; i < p->len && line; i++)
		if (p->data[i] == '\n')
			line--;
	for (; i < p->len && col; i++)
		if (i + 1 >= p->len || ((unsigned char)p->data[i + 1] & 0xC0) != 0x80)
			col--;
	return i < p->len ? p->data[i] : 0;
}

/* Reads the next event into p->ev. Returns 0, -EINVAL (syntax error
 * recorded) or -ENOMEM. */
static int next(struct parser *p)
{
	if (p->have_ev) {
		yaml_event_delete(&p->ev);
		p->have_ev = false;
	}
	if (!yaml_parser_parse(&p->yp, &p->ev)) {
		if (p->yp.error == YAML_MEMORY_ERROR)
			return -ENOMEM;
		const yaml_mark_t *m = &p->yp.problem_mark;
		int line = (int)m->line + 1, col = (int)m->column + 1;
		if (p->yp.error == YAML_READER_ERROR) {
			/* encoding errors come with a byte offset only */
			line = col = 1;
			for (size_t i = 0; i < p->yp.problem_offset && i < p->len; i++) {
				if (p->data[i] == '\n') {
					line++;
					col = 1;
				} else if (((unsigned char)p->data[i] & 0xC0) != 0x80) {
					col++;
				}
			}
		}
		const char *hint = "";
		if (p->yp.error == YAML_SCANNER_ERROR && p->yp.problem &&
		    strstr(p->yp.problem, "cannot start any token") &&
		    char_at(p, m->line, m->column) == '\t')
			hint = " (a tab: YAML indents with spaces only)";
		int rc = diags_add(p->d, line, col, "YAML syntax error: %s%s%s%s",
				   p->yp.problem ? p->yp.problem : "invalid input",
				   p->yp.context ? " " : "",
				   p->yp.context ? p->yp.context : "", hint);
		return rc ? rc : -EINVAL;
	}
	p->have_ev = true;
	return 0;
}

static struct doc_node *new_node(enum doc_kind kind, const yaml_mark_t *m)
{
	struct doc_node *n = calloc(1, sizeof(*n));
	if (n) {
		n->kind = kind;
		n->line = (int)m->line + 1;
		n->col = (int)m->column + 1;
	}
	return n;
}

static int push_item(struct doc_node *n, struct doc_node *item, size_t *cap)
{
	if (n->n == *cap) {
		size_t c = *cap ? *cap * 2 : 4;
		struct doc_node **v = realloc(n->items, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		n->items = v;
		*cap = c;
	}
	n->items[n->n++] = item;
	return 0;
}

static int parse_node(struct parser *p, int depth, struct doc_node **out);

static int key_cmp(const void *a, const void *b)
{
	const struct doc_node *x = *(struct doc_node *const *)a;
	const struct doc_node *y = *(struct doc_node *const *)b;
	int c = strcmp(x->str, y->str);
	if (c)
		return c;
	/* equal keys: in document order, so the first one comes first */
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->col < y->col ? -1 : x->col > y->col;
}

/* Reports keys that appear twice in a mapping, in O(n log n). */
static int check_duplicates(struct parser *p, const struct doc_node *map)
{
	if (map->n < 2)
		return 0;
	struct doc_node **keys = malloc(map->n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < map->n; i++)
		keys[i] = map->items[2 * i];
	qsort(keys, map->n, sizeof(*keys), key_cmp);
	int rc = 0;
	for (size_t i = 1, first = 0; i < map->n && !rc; i++) {
		if (strcmp(keys[first]->str, keys[i]->str)) {
			first = i;
			continue;
		}
		rc = diags_add(p->d, keys[i]->line, keys[i]->col,
			       "duplicate key '%s' (first at line %d)", keys[i]->str,
			       keys[first]->line);
		p->rc = -EINVAL;
	}
	free(keys);
	return rc;
}

/* Parses the items of the collection whose start event is current, up to
 * its end event. */
static int parse_collection(struct parser *p, int depth, struct doc_node *n)
{
	yaml_event_type_t end = n->kind == DOC_MAP ? YAML_MAPPING_END_EVENT
						   : YAML_SEQUENCE_END_EVENT;
	size_t cap = 0;
	int rc;
	for (;;) {
		if ((rc = next(p)))
			goto fail;
		if (p->ev.type == end)
			break;
		struct doc_node *item = NULL;
		if ((rc = parse_node(p, depth + 1, &item)))
			goto fail;
		if (n->kind == DOC_MAP && n->n % 2 == 0) {
			if (item->kind == DOC_SCALAR && strlen(item->str) != item->len) {
				rc = diags_add(p->d, item->line, item->col,
					       "mapping keys must not contain NUL characters");
				doc_free(item);
				rc = rc ? rc : -EINVAL;
				goto fail;
			}
			if (item->kind != DOC_SCALAR) {
				rc = diags_add(p->d, item->line, item->col,
					       "mapping keys must be plain strings, not %s",
					       doc_kind_name(item));
				doc_free(item);
				rc = rc ? rc : -EINVAL;
				goto fail;
			}
		}
		if ((rc = push_item(n, item, &cap))) {
			doc_free(item);
			goto fail;
		}
	}
	if (n->kind == DOC_MAP) {
		n->n /= 2;
		return check_duplicates(p, n);
	}
	return 0;
fail:
	/* n->n counts raw items here, not pairs: free them ourselves */
	for (size_t i = 0; i < n->n; i++)
		doc_free(n->items[i]);
	n->n = 0;
	return rc;
}

/* True for the tags under which a plain scalar keeps its typed reading
 * (null, booleans, numbers); NULL (no tag) too. */
static bool typed_tag(const char *tag)
{
	return !tag || !strcmp(tag, YAML_NULL_TAG) || !strcmp(tag, YAML_BOOL_TAG) ||
	       !strcmp(tag, YAML_INT_TAG) || !strcmp(tag, YAML_FLOAT_TAG);
}

static int parse_node(struct parser *p, int depth, struct doc_node **out)
{
	yaml_event_t *e = &p->ev;
	struct doc_node *n = NULL;
	int rc;
	if (depth >= DOC_MAX_DEPTH) {
		rc = diags_add(p->d, (int)e->start_mark.line + 1,
			       (int)e->start_mark.column + 1,
			       "nesting deeper than %d levels", DOC_MAX_DEPTH);
		return rc ? rc : -EINVAL;
	}
	switch (e->type) {
	case YAML_SCALAR_EVENT:
		n = new_node(DOC_SCALAR, &e->start_mark);
		if (!n)
			return -ENOMEM;
		n->len = e->data.scalar.length;
		n->str = malloc(n->len + 1);
		if (!n->str) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n->str, e->data.scalar.value, n->len);
		n->str[n->len] = '\0';
		n->end_line = (int)e->end_mark.line + 1;
		n->end_col = (int)e->end_mark.column + 1;
		/* an explicit tag other than the core schema's typed ones
		 * (`!!str 3`, `!custom 3`) makes a plain scalar a string */
		n->plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			   (e->data.scalar.plain_implicit || typed_tag((const char *)e->data.scalar.tag));
		switch (e->data.scalar.style) {
		case YAML_SINGLE_QUOTED_SCALAR_STYLE:
			n->style = '\'';
			break;
		case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
			n->style = '"';
			break;
		case YAML_LITERAL_SCALAR_STYLE:
			n->style = '|';
			break;
		case YAML_FOLDED_SCALAR_STYLE:
			n->style = '>';
			break;
		default:
			n->style = 'p';
			break;
		}
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		n = new_node(e->type == YAML_MAPPING_START_EVENT ? DOC_MAP : DOC_SEQ,
			     &e->start_mark);
		if (!n)
			return -ENOMEM;
		if ((rc = parse_collection(p, depth, n))) {
			doc_free(n);
			return rc;
		}
		break;
	case YAML_ALIAS_EVENT:
		rc = diags_add(p->d, (int)e->start_mark.line + 1,
			       (int)e->start_mark.column + 1,
			       "YAML aliases (*name) are not supported: write the value out");
		return rc ? rc : -EINVAL;
	default:
		rc = diags_add(p->d, (int)e->start_mark.line + 1,
			       (int)e->start_mark.column + 1,
			       "unexpected YAML event");
		return rc ? rc : -EINVAL;
	}
	*out = n;
	return 0;
}

int doc_parse(const char *data, size_t len, struct doc_node **root,
	      struct diags *d)
{
	struct parser p = {.d = d, .data = data, .len = len};
	struct doc_node *n = NULL;
	int rc;

	*root = NULL;
	if (!yaml_parser_initialize(&p.yp))
		return -ENOMEM;
	yaml_parser_set_input_string(&p.yp, (const unsigned char *)data, len);
	yaml_parser_set_encoding(&p.yp, YAML_UTF8_ENCODING);

	if ((rc = next(&p)) || (rc = next(&p))) /* STREAM-START, then DOC or END */
		goto out;
	if (p.ev.type == YAML_STREAM_END_EVENT)
		goto out; /* empty input */
	if ((rc = next(&p)))
		goto out;
	if ((rc = parse_node(&p, 0, &n)))
		goto out;
	if ((rc = next(&p))) /* DOCUMENT-END */
		goto out;
	if ((rc = next(&p)))
		goto out;
	if (p.ev.type != YAML_STREAM_END_EVENT) {
		rc = diags_add(d, (int)p.ev.start_mark.line + 1,
			       (int)p.ev.start_mark.column + 1,
			       "only one YAML document is allowed in a spec");
		if (!rc)
			rc = -EINVAL;
		goto out;
	}
	rc = p.rc;
out:
	if (p.have_ev)
		yaml_event_delete(&p.ev);
	yaml_parser_delete(&p.yp);
	if (rc) {
		doc_free(n);
		return rc;
	}
	*root = n;
	return 0;
}
