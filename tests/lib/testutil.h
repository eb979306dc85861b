/*
 * testutil.h - helpers shared by the unit tests.
 */
#ifndef KW_TESTUTIL_H
#define KW_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/service.h"

/* A fresh private directory under $TMPDIR (or /tmp); the caller frees it. */
char *tu_tempdir(void);

/* Removes a directory tree made by tu_tempdir. */
void tu_rmtree(const char *dir);

/* Fills cfg with the defaults and a data dir of dir. */
void tu_config(kw_config *cfg, const char *dir);

/* Opens a service on a fresh temp dir; *dir receives the dir (caller frees). */
kw_service *tu_service(char **dir);

/* Reads a whole file into a new buffer; *len receives its size. NULL if missing. */
unsigned char *tu_read_file(const char *path, size_t *len);

/* true when the needle occurs in the n bytes at hay. */
int tu_contains(const unsigned char *hay, size_t n, const char *needle);

#endif
