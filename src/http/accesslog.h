/*
 * accesslog.h - the access log: whole lines from many threads, written in
 * batches (see accesslog.c).
 */
#ifndef KW_ACCESSLOG_H
#define KW_ACCESSLOG_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/accesslog.h is in the http layer, which core, store and service must not include"
#endif

#include <stddef.h>

typedef struct kw_accesslog kw_accesslog;

/* A log writing to fd (borrowed), or NULL when out of memory. */
kw_accesslog *kw_accesslog_new(int fd);

/* Writes every pending line, then frees the log. */
void kw_accesslog_free(kw_accesslog *log);

/* Appends one complete line (with its newline); it reaches fd within 100 ms. */
void kw_accesslog_line(kw_accesslog *log, const char *line, size_t len);

#endif
