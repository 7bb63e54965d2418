/* botfactoryctl: the command-line tool. For now it runs specs offline
 * (validate, chat, test) with the same engine the daemon uses; commands that
 * drive a running daemon join the table below as the daemon grows. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const struct ctl_cmd cmds[] = {
	{"validate", "FILE...", "check spec files and report every error",
	 "Compiles each spec (YAML or JSON) exactly as the daemon would and prints\n"
	 "every problem as FILE:LINE:COLUMN: message on stderr.\n"
	 "Exit status: 0 when all files are valid, 1 otherwise, 2 for a usage\n"
	 "error (an unknown option; '--' ends options).\n",
	 cmd_validate},
	{"chat", "[--bot-username NAME] FILE",
	 "talk to a bot in the terminal, without Telegram",
	 "Type a message and press Enter; the bot's replies follow, with their\n"
	 "buttons numbered. Also reads piped stdin, one message per line.\n"
	 "  #N            press button N of the newest keyboard\n"
	 "  :press LABEL  press the newest button labelled LABEL\n"
	 "  :wait 10m     advance the clock (fires ask timeouts)\n"
	 "  :as KEY=VALUE ...   change who talks: user=ID first_name= last_name=\n"
	 "                username= chat=ID type=private|group|supergroup title=\n"
	 "                bot= (values without spaces)\n"
	 "  :state        show the conversation state as stored\n"
	 "  :quit         leave (or end of input)\n"
	 "Ask timeouts also fire in real time while you wait.\n",
	 cmd_chat},
	{"test", "[--bot-username NAME] SPEC TRANSCRIPT...",
	 "run scripted conversations against a spec",
	 "Each transcript is a conversation script (see doc/testing.md):\n"
	 "  > text     the user sends text\n"
	 "  < text     the bot's next message must be exactly text (\\n = newline)\n"
	 "  = [A] [B] | [C]   the buttons of that message, rows separated by |\n"
	 "  * A        the user presses the button labelled A\n"
	 "  ! text     the notice shown for the last button press\n"
	 "  ~ 10m      time passes (ask timeouts fire)\n"
	 "  @ key=value ...   who talks from now on (user=, chat=, type=, ...)\n"
	 "  # comment\n"
	 "Exit status: 0 when every transcript passes; 1 otherwise, after a diff\n"
	 "of expected (-) and actual (+) lines.\n",
	 cmd_test},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

const struct ctl_cmd *ctl_find(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

void ctl_print_help(const struct ctl_cmd *c)
{
	printf("usage: botfactoryctl %s %s\n\n%s.\n\n%s", c->name, c->usage,
	       c->summary, c->help);
}

int ctl_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return 0;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return 1;
	}
	return 0;
}

int ctl_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "botfactoryctl %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'botfactoryctl %s --help')\n", name);
	return 2;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: botfactoryctl COMMAND [ARGS...]\n\n"
		   "Runs and inspects botfactory bot specs.\n\nCommands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\n'botfactoryctl COMMAND --help' tells more about a command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		if (argc > 2 && ctl_find(argv[2])) {
			ctl_print_help(ctl_find(argv[2]));
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("botfactoryctl " BOTFACTORY_VERSION "\n");
		return 0;
	}
	const struct ctl_cmd *c = ctl_find(argv[1]);
	if (!c) {
		fprintf(stderr,
			"botfactoryctl: unknown command '%s' (see 'botfactoryctl --help')\n",
			argv[1]);
		return 2;
	}
	if (ctl_wants_help(argc - 1, argv + 1)) {
		ctl_print_help(c);
		return 0;
	}
	return c->fn(argc - 1, argv + 1);
}
