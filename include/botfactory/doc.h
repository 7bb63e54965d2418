/* doc: a YAML (or JSON, which libyaml reads as YAML flow style) document as a
 * plain tree of scalars, sequences and mappings, each node carrying its line
 * and column, so that the spec compiler can report `file:line:col: message`.
 * Also holds `struct diags`, the error list every validating layer appends to. */
#ifndef BOTFACTORY_DOC_H
#define BOTFACTORY_DOC_H

#include <stdbool.h>
#include <stddef.h>

enum doc_kind { DOC_SCALAR, DOC_SEQ, DOC_MAP };

struct doc_node {
	enum doc_kind kind;
	int line, col;   /* 1-based; col counts characters */
	int end_line, end_col; /* where a scalar's source text ends */
	char *str;       /* scalar text, NUL-terminated (owned) */
	size_t len;      /* bytes of str */
	bool plain;      /* scalar was unquoted and untagged, or tagged !!null,
			    !!bool, !!int or !!float (so `null`, `true`, `12` are
			    typed); `!!str 12` is a string */
	char style;      /* scalar style: 'p' plain, '\'' single, '"' double,
			    '|' literal, '>' folded */
	struct doc_node **items; /* SEQ: n items; MAP: 2n items, key then value */
	size_t n;
};

struct diag {
	int line, col; /* 0 when unknown */
	char *msg;     /* owned */
};

struct diags {
	struct diag *v;
	size_t n, cap;
};

/* Appends an error. Returns 0 or -ENOMEM. */
int diags_add(struct diags *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Sorts by position (stable for equal positions). */
void diags_sort(struct diags *d);
void diags_free(struct diags *d);

/* Parses one YAML/JSON document from data[0..len). Aliases, a second
 * document and non-scalar or duplicate mapping keys are errors; nesting is
 * limited to DOC_MAX_DEPTH. Returns 0 with *root set (NULL for an empty
 * document; free with doc_free), -EINVAL with errors appended to d, or
 * -ENOMEM. */
int doc_parse(const char *data, size_t len, struct doc_node **root,
	      struct diags *d);
void doc_free(struct doc_node *n);

#define DOC_MAX_DEPTH 64

/* True for a plain scalar spelled ~, null, Null, NULL or empty. */
bool doc_is_null(const struct doc_node *n);
/* Looks key up in a mapping. Returns the value node (borrowed) or NULL. */
struct doc_node *doc_map_get(const struct doc_node *map, const char *key);
/* A short name of the node's type for messages: "a string", "a list",
 * "a mapping". Static string. */
const char *doc_kind_name(const struct doc_node *n);

#endif
