/* ctl: the command table of botfactoryctl. Each command is a function taking
 * its own argv (argv[0] is the command name) and returning the exit status:
 * 0 success, 1 failure (invalid spec, failed test), 2 usage error. */
#ifndef BOTFACTORY_CTL_H
#define BOTFACTORY_CTL_H

struct ctl_cmd {
	const char *name;
	const char *usage;   /* one line: arguments */
	const char *summary; /* one line: what it does */
	const char *help;    /* the full --help text after usage */
	int (*fn)(int argc, char **argv);
};

int cmd_validate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_test(int argc, char **argv);

/* Prints a command's usage and help to stdout. */
void ctl_print_help(const struct ctl_cmd *c);
/* Finds a command by name, or NULL. */
const struct ctl_cmd *ctl_find(const char *name);
/* True when argv has -h or --help before any "--". */
int ctl_wants_help(int argc, char **argv);
/* Prints "botfactoryctl NAME: <formatted message> (see ... --help)" on
 * stderr; returns 2 (the usage-error exit status). */
int ctl_usage_error(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
