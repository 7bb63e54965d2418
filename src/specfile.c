/* specfile: reading and compiling spec files (see specfile.h). */
#include "botfactory/specfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "botfactory/buf.h"

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && !strcmp(s + n - m, suffix);
}

bool specfile_candidate(const char *name)
{
	if (name[0] == '.' || name[0] == '#' || ends_with(name, "~"))
		return false;
	return ends_with(name, ".yaml") || ends_with(name, ".yml") ||
	       ends_with(name, ".json");
}

int specfile_id(const char *path, char *id, size_t size)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(base);
	if (ends_with(base, ".yaml") || ends_with(base, ".json"))
		n -= 5;
	else if (ends_with(base, ".yml"))
		n -= 4;
	if (n >= size)
		return -ENAMETOOLONG;
	memcpy(id, base, n);
	id[n] = '\0';
	return 0;
}

int specfile_read(const char *path, struct buf *b, struct diags *d)
{
	/* never blocks on a FIFO; only regular files are specs */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat sb = {0};
	if (fd < 0) {
		int e = errno;
		return diags_add(d, 0, 0, "cannot open: %s", strerror(e)) ? -ENOMEM : -e;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		const char *why = errno && !sb.st_mode ? strerror(errno)
				  : S_ISDIR(sb.st_mode) ? strerror(EISDIR)
							: "not a regular file";
		close(fd);
		return diags_add(d, 0, 0, "cannot read: %s", why) ? -ENOMEM : -EINVAL;
	}
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		int e = errno;
		close(fd);
		return diags_add(d, 0, 0, "cannot open: %s", strerror(e)) ? -ENOMEM : -e;
	}
	char chunk[8192];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b->len + n > SPEC_MAX_BYTES) {
			rc = diags_add(d, 0, 0, "larger than %d bytes: not a spec",
				       SPEC_MAX_BYTES) ? -ENOMEM : -EFBIG;
			break;
		}
		if ((rc = buf_append(b, chunk, n)))
			break;
	}
	if (!rc && ferror(f)) {
		int e = errno ? errno : EIO;
		rc = diags_add(d, 0, 0, "cannot read: %s", strerror(e)) ? -ENOMEM : -e;
	}
	fclose(f);
	return rc;
}

int specfile_load(const char *path, struct spec **out, struct diags *d)
{
	char id[256];
	struct buf b = BUF_INIT;
	*out = NULL;
	if (specfile_id(path, id, sizeof(id)))
		return diags_add(d, 0, 0, "file name too long") ? -ENOMEM : -EINVAL;
	int rc = specfile_read(path, &b, d);
	if (!rc)
		rc = spec_compile(id, b.data ? b.data : "", b.len, out, d);
	buf_free(&b);
	return rc;
}
