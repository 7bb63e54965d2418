/* specfile: a spec as a file: the bot id is the file name without its
 * .yaml/.yml/.json extension, and the file is read (bounded by
 * SPEC_MAX_BYTES) and compiled. Used by the daemon and by botfactoryctl,
 * so that both load files the same way. Blocking file I/O: the daemon calls
 * it only where blocking is acceptable (start-up) or off the loop. */
#ifndef BOTFACTORY_SPECFILE_H
#define BOTFACTORY_SPECFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "botfactory/buf.h"
#include "botfactory/doc.h"
#include "botfactory/spec.h"

/* True when name (a file name, no directory) looks like a spec: ends in
 * .yaml, .yml or .json and is not hidden, an editor's temp or swap file. */
bool specfile_candidate(const char *name);

/* Writes the bot id for path (file name without directory and extension)
 * into id[size]. Returns 0, or -ENAMETOOLONG. */
int specfile_id(const char *path, char *id, size_t size);

/* Appends the content of the spec file at path to b. Never blocks on a
 * FIFO: only a regular file is read. Returns 0; -EFBIG when it is larger
 * than SPEC_MAX_BYTES (b then holds its first bytes); another negative
 * errno when it cannot be opened or read; or -ENOMEM. On error, one error
 * without position is appended to d. */
int specfile_read(const char *path, struct buf *b, struct diags *d);

/* Reads and compiles the spec at path. Returns 0 with *out set (free with
 * spec_free); -EINVAL when the spec is invalid (errors appended to d, with
 * positions); a negative errno when the file cannot be read (one error
 * appended to d, without position); or -ENOMEM. */
int specfile_load(const char *path, struct spec **out, struct diags *d);

#endif
