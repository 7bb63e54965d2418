/* botfactoryctl validate: compiles spec files and reports every error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "offline.h"

int cmd_validate(int argc, char **argv)
{
	int first = 1;
	if (first < argc && !strcmp(argv[first], "--"))
		first++; /* what follows is files, even "-x.yaml" */
	else
		for (int i = 1; i < argc; i++)
			if (argv[i][0] == '-' && argv[i][1])
				return ctl_usage_error("validate", "unknown option '%s'", argv[i]);
	if (argc <= first)
		return ctl_usage_error("validate", "needs at least one spec FILE");
	int status = 0;
	for (int i = first; i < argc; i++) {
		struct spec *s = NULL;
		int rc = offline_load(argv[i], stderr, &s);
		if (rc) {
			status = 1;
			continue;
		}
		printf("%s: ok (%zu flow%s)\n", argv[i], s->nflows,
		       s->nflows == 1 ? "" : "s");
		spec_free(s);
	}
	return status;
}
