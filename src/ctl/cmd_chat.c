/* botfactoryctl chat: an interactive (or piped) conversation with a spec,
 * using the simulated Telegram of offline.c on the real clock. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "offline.h"

#include "botfactory/util.h"

struct chat {
	struct sim sim;
	int64_t offset_ms; /* added to the real clock by :wait */
};

static int64_t real_ms(void)
{
	return util_clock_ms(CLOCK_REALTIME);
}

static void print_msg(const struct sim_msg *m, int *number)
{
	printf("bot: ");
	for (const char *p = m->text; *p; p++) {
		putchar(*p);
		if (*p == '\n')
			printf("     ");
	}
	putchar('\n');
	for (size_t r = 0; r < m->nrows; r++) {
		printf("    ");
		for (size_t i = 0; i < m->rows[r].n; i++) {
			const struct action_button *b = &m->rows[r].v[i];
			printf(" [%d] %s", ++*number, b->text);
			if (b->url)
				printf(" <%s>", b->url);
		}
		putchar('\n');
	}
}

static void show(struct chat *c, struct sim_outs *o)
{
	for (size_t i = 0; i < o->n; i++) {
		if (o->v[i].kind == SIM_NOTICE) {
			printf("bot (notice): %s\n", o->v[i].notice);
			continue;
		}
		int number = 0;
		print_msg(&c->sim.msgs[o->v[i].msg], &number);
	}
	fflush(stdout);
	sim_outs_free(o);
}

/* Fires deadlines that are due on the (shifted) real clock. */
static int tick(struct chat *c)
{
	struct sim_outs o = {0};
	int64_t now = real_ms() + c->offset_ms;
	int rc = sim_advance(&c->sim, now > c->sim.now_ms ? now - c->sim.now_ms : 0, &o);
	show(c, &o);
	return rc;
}

static int press_number(struct chat *c, const char *arg, struct sim_outs *o)
{
	const struct sim_msg *kb = sim_last_keyboard(&c->sim);
	char *end;
	long n = strtol(arg, &end, 10);
	if (!kb || *end || n < 1) {
		fprintf(stderr, "no button %s: press a number shown in [brackets]\n", arg);
		return 0;
	}
	for (size_t r = 0; r < kb->nrows; r++) {
		if ((size_t)n > kb->rows[r].n) {
			n -= (long)kb->rows[r].n;
			continue;
		}
		const struct action_button *b = &kb->rows[r].v[n - 1];
		if (b->url) {
			printf("(opens %s)\n", b->url);
			return 0;
		}
		/* this very button: labels may repeat */
		return sim_press_button(&c->sim, kb, b, o);
	}
	fprintf(stderr, "no button %s: press a number shown in [brackets]\n", arg);
	return 0;
}

static int set_identity(struct chat *c, char *args)
{
	for (char *kv = strtok(args, " \t"); kv; kv = strtok(NULL, " \t")) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			fprintf(stderr, ":as takes KEY=VALUE pairs, not '%s'\n", kv);
			continue;
		}
		*eq = '\0';
		if (sim_set(&c->sim, kv, eq + 1))
			fprintf(stderr, ":as: unknown key or bad value '%s=%s'\n", kv, eq + 1);
	}
	return 0;
}

/* Handles one input line. Returns 1 to quit, 0 to go on, <0 on error. */
static int handle(struct chat *c, char *line)
{
	struct sim_outs o = {0};
	int rc = 0;
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0)
		return 0;
	c->sim.now_ms = real_ms() + c->offset_ms;
	if (line[0] == '#' && line[1]) {
		rc = press_number(c, line + 1, &o);
	} else if (!strcmp(line, ":quit") || !strcmp(line, ":q")) {
		return 1;
	} else if (!strncmp(line, ":wait ", 6)) {
		int64_t ms;
		if (spec_parse_duration(line + 6, &ms)) {
			fprintf(stderr, ":wait takes a duration like 30s, 10m or 2h\n");
			return 0;
		}
		c->offset_ms += ms;
		return tick(c);
	} else if (!strncmp(line, ":press ", 7)) {
		rc = sim_press(&c->sim, line + 7, &o);
		if (rc == -ENOENT || rc == -EINVAL) {
			fprintf(stderr, "no button labelled '%s' to press\n", line + 7);
			rc = 0;
		}
	} else if (!strncmp(line, ":as ", 4)) {
		return set_identity(c, line + 4);
	} else if (!strcmp(line, ":state")) {
		for (size_t i = 0; i < c->sim.nconvos; i++) {
			char *j = convo_to_json(&c->sim.convos[i].st);
			if (!j)
				return -ENOMEM;
			printf("chat %lld user %lld: %s\n",
			       (long long)c->sim.convos[i].chat_id,
			       (long long)c->sim.convos[i].user_id, j);
			free(j);
		}
		return 0;
	} else if (line[0] == ':' && line[1] != ' ' && line[1] != '\0' &&
		   line[1] != ':' && line[1] != ')' && line[1] != '(') {
		fprintf(stderr, "unknown command '%s' (:wait, :press, :as, :state, :quit)\n",
			line);
		return 0;
	} else {
		rc = sim_text(&c->sim, line, &o);
	}
	if (rc < 0) {
		sim_outs_free(&o);
		return rc;
	}
	show(c, &o);
	return 0;
}

int cmd_chat(int argc, char **argv)
{
	const char *username = NULL, *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bot-username") && i + 1 < argc)
			username = argv[++i];
		else if (!strcmp(argv[i], "--bot-username"))
			return ctl_usage_error("chat", "--bot-username needs a NAME");
		else if (argv[i][0] == '-' && argv[i][1])
			return ctl_usage_error("chat", "unknown option '%s'", argv[i]);
		else if (!file)
			file = argv[i];
		else
			return ctl_usage_error("chat", "takes one spec FILE");
	}
	if (!file)
		return ctl_usage_error("chat", "needs a spec FILE");

	struct spec *spec = NULL;
	if (offline_load(file, stderr, &spec))
		return 1;
	struct chat c = {0};
	sim_init(&c.sim, spec, real_ms());
	if (username && sim_set(&c.sim, "bot", username)) {
		spec_free(spec);
		return ctl_usage_error("chat", "--bot-username is too long");
	}
	int tty = isatty(STDIN_FILENO);
	if (tty)
		printf("Talking to %s (@%s). Type a message; #N presses a button; :quit leaves.\n",
		       spec->name ? spec->name : spec->id, c.sim.bot_username);

	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	for (;;) {
		if (tty) {
			printf("you> ");
			fflush(stdout);
		}
		/* wait for input, firing ask timeouts as they fall due */
		for (;;) {
			int64_t due = sim_next_deadline(&c.sim);
			int timeout = -1;
			if (due) {
				int64_t wait = due - (real_ms() + c.offset_ms);
				timeout = wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait;
			}
			struct pollfd p = {STDIN_FILENO, POLLIN, 0};
			int n = poll(&p, 1, timeout);
			if (n < 0 && errno == EINTR)
				continue;
			if (n != 0)
				break;
			if ((rc = tick(&c)) < 0)
				goto out;
		}
		if (getline(&line, &cap, stdin) < 0)
			break;
		rc = handle(&c, line);
		if (rc)
			break;
	}
out:
	if (tty)
		putchar('\n');
	free(line);
	sim_free(&c.sim);
	spec_free(spec);
	if (rc < 0) {
		fprintf(stderr, "botfactoryctl chat: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
