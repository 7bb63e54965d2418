/* convo: conversation state, its copy and its JSON form (see convo.h). */
#include "botfactory/convo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "botfactory/utf8.h"

void convo_leave_flow(struct convo *c)
{
	free(c->flow);
	free(c->ask);
	free(c->args);
	free(c->first_name);
	free(c->last_name);
	free(c->username);
	c->flow = c->ask = c->args = NULL;
	c->first_name = c->last_name = c->username = NULL;
	c->step = 0;
	c->deadline_ms = 0;
}

void convo_clear(struct convo *c)
{
	convo_leave_flow(c);
	for (size_t i = 0; i < c->nvars; i++) {
		free(c->vars[i].name);
		free(c->vars[i].value);
	}
	free(c->vars);
	c->vars = NULL;
	c->nvars = 0;
}

int convo_set_str(char **field, const char *s)
{
	char *p = NULL;
	if (s && !(p = strdup(s)))
		return -ENOMEM;
	free(*field);
	*field = p;
	return 0;
}

const char *convo_get(const struct convo *c, const char *name)
{
	for (size_t i = 0; i < c->nvars; i++)
		if (!strcmp(c->vars[i].name, name))
			return c->vars[i].value;
	return NULL;
}

int convo_set(struct convo *c, const char *name, const char *value)
{
	for (size_t i = 0; i < c->nvars; i++) {
		if (strcmp(c->vars[i].name, name))
			continue;
		if (!value) {
			free(c->vars[i].name);
			free(c->vars[i].value);
			c->vars[i] = c->vars[--c->nvars];
			return 0;
		}
		return convo_set_str(&c->vars[i].value, value);
	}
	if (!value)
		return 0;
	char *n = strdup(name), *v = strdup(value);
	struct convo_var *vars = realloc(c->vars, (c->nvars + 1) * sizeof(*vars));
	if (!n || !v || !vars) {
		free(n);
		free(v);
		if (vars)
			c->vars = vars;
		return -ENOMEM;
	}
	c->vars = vars;
	c->vars[c->nvars++] = (struct convo_var){n, v};
	return 0;
}

int convo_copy(struct convo *dst, const struct convo *src)
{
	*dst = (struct convo)CONVO_INIT;
	if (convo_set_str(&dst->flow, src->flow) ||
	    convo_set_str(&dst->ask, src->ask) ||
	    convo_set_str(&dst->args, src->args) ||
	    convo_set_str(&dst->first_name, src->first_name) ||
	    convo_set_str(&dst->last_name, src->last_name) ||
	    convo_set_str(&dst->username, src->username))
		goto nomem;
	dst->step = src->step;
	dst->deadline_ms = src->deadline_ms;
	for (size_t i = 0; i < src->nvars; i++)
		if (convo_set(dst, src->vars[i].name, src->vars[i].value))
			goto nomem;
	return 0;
nomem:
	convo_clear(dst);
	return -ENOMEM;
}

static int add_str(cJSON *o, const char *key, const char *v)
{
	if (!v)
		return 0;
	return cJSON_AddStringToObject(o, key, v) ? 0 : -ENOMEM;
}

char *convo_to_json(const struct convo *c)
{
	char *out = NULL;
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddNumberToObject(o, "v", CONVO_VERSION) ||
	    add_str(o, "flow", c->flow))
		goto out;
	if (c->flow && (!cJSON_AddNumberToObject(o, "step", (double)c->step) ||
			add_str(o, "ask", c->ask) || add_str(o, "args", c->args)))
		goto out;
	if (c->deadline_ms &&
	    !cJSON_AddNumberToObject(o, "deadline", (double)c->deadline_ms))
		goto out;
	if (c->first_name || c->last_name || c->username) {
		cJSON *u = cJSON_AddObjectToObject(o, "user");
		if (!u || add_str(u, "first_name", c->first_name) ||
		    add_str(u, "last_name", c->last_name) ||
		    add_str(u, "username", c->username))
			goto out;
	}
	cJSON *vars = cJSON_AddObjectToObject(o, "vars");
	if (!vars)
		goto out;
	for (size_t i = 0; i < c->nvars; i++)
		if (add_str(vars, c->vars[i].name, c->vars[i].value))
			goto out;
	out = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return out;
}

/* A string member, or NULL when absent; -EINVAL through *bad when the
 * member is present but not a valid UTF-8 string. */
static const char *get_str(const cJSON *o, const char *key, int *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v))
		return NULL;
	if (!cJSON_IsString(v) || !utf8_valid(v->valuestring,
					       strlen(v->valuestring), NULL)) {
		*bad = 1;
		return NULL;
	}
	return v->valuestring;
}

int convo_from_json(struct convo *dst, const char *json, size_t len)
{
	int rc = -EINVAL, bad = 0;
	*dst = (struct convo)CONVO_INIT;
	cJSON *o = cJSON_ParseWithLength(json, len);
	if (!o) /* cJSON reports allocation failure and bad JSON alike */
		return -EINVAL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");
	if (!cJSON_IsObject(o) || !cJSON_IsNumber(v) || v->valueint != CONVO_VERSION)
		goto out;
	const char *flow = get_str(o, "flow", &bad);
	const char *ask = get_str(o, "ask", &bad);
	const char *args = get_str(o, "args", &bad);
	const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
	const cJSON *deadline = cJSON_GetObjectItemCaseSensitive(o, "deadline");
	const cJSON *vars = cJSON_GetObjectItemCaseSensitive(o, "vars");
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(o, "user");
	const char *first = get_str(user, "first_name", &bad);
	const char *last = get_str(user, "last_name", &bad);
	const char *uname = get_str(user, "username", &bad);
	if (bad || (step && (!cJSON_IsNumber(step) || step->valuedouble < 0 ||
			     step->valuedouble > 1e6)) ||
	    (deadline && (!cJSON_IsNumber(deadline) || deadline->valuedouble < 0 ||
			  deadline->valuedouble > 9e15)) ||
	    (vars && !cJSON_IsObject(vars)) || (user && !cJSON_IsObject(user)) ||
	    (flow && !ask))
		goto out;
	rc = -ENOMEM;
	if (convo_set_str(&dst->flow, flow) || convo_set_str(&dst->ask, ask) ||
	    convo_set_str(&dst->args, args) || convo_set_str(&dst->first_name, first) ||
	    convo_set_str(&dst->last_name, last) || convo_set_str(&dst->username, uname))
		goto out;
	dst->step = step ? (size_t)step->valuedouble : 0;
	dst->deadline_ms = deadline ? (int64_t)deadline->valuedouble : 0;
	const cJSON *item;
	cJSON_ArrayForEach(item, vars)
	{
		if (!cJSON_IsString(item) || !item->string ||
		    !utf8_valid(item->valuestring, strlen(item->valuestring), NULL)) {
			rc = -EINVAL;
			goto out;
		}
		if (convo_set(dst, item->string, item->valuestring))
			goto out;
	}
	rc = 0;
out:
	cJSON_Delete(o);
	if (rc)
		convo_clear(dst);
	return rc;
}
