/*
 * output.c - how the CLI talks to the terminal: JSON documents, human
 * "field: value" blocks and tables drawn from the same JSON objects, error
 * sentences (with the exit code core/status.c gives their status), and
 * secrets in and out through read(2)/write(2) so that stdio never holds a
 * copy.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"

void kw_cli_errorf(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "keyward: %s\n", msg);
}

int kw_cli_fail(const kw_error *err)
{
    kw_cli_errorf("%s", err->message[0] ? err->message : kw_status_text(err->status));
    return kw_status_exit_code(err->status == KW_OK ? KW_ERR_INTERNAL : err->status);
}

/* Writes all n bytes to fd. Returns 0, or -1 on error. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int kw_cli_print_json(const json_t *doc)
{
    const size_t flags = JSON_INDENT(2);
    size_t n = json_dumpb(doc, NULL, 0, flags);
    char *buf = n ? malloc(n + 1) : NULL;
    if (!buf) {
        kw_cli_errorf("out of memory");
        return KW_CLI_EXIT_FAIL;
    }
    json_dumpb(doc, buf, n, flags);
    buf[n] = '\n';
    fflush(stdout);
    int rc = write_all(STDOUT_FILENO, buf, n + 1);
    sodium_memzero(buf, n + 1);
    free(buf);
    if (rc != 0) {
        kw_cli_errorf("cannot write to standard output");
        return KW_CLI_EXIT_FAIL;
    }
    return KW_CLI_EXIT_OK;
}

int kw_cli_print_secret(const char *s)
{
    fflush(stdout);
    if (write_all(STDOUT_FILENO, s, strlen(s)) != 0 || write_all(STDOUT_FILENO, "\n", 1) != 0) {
        kw_cli_errorf("cannot write to standard output");
        return KW_CLI_EXIT_FAIL;
    }
    return KW_CLI_EXIT_OK;
}

int kw_cli_emit_created(const kw_cli *cli, json_t *doc, const char *member,
                        const char *const *fields, char *secret, const char *id)
{
    int rc;
    if (!doc) {
        kw_cli_errorf("out of memory; %s was created but cannot be shown: delete it", id);
        rc = KW_CLI_EXIT_FAIL;
    } else if (cli->json) {
        rc = kw_cli_print_json(doc);
    } else {
        kw_cli_print_fields(json_object_get(doc, member), fields);
        putchar('\n');
        rc = kw_cli_print_secret(secret);
    }
    json_decref(doc);
    sodium_memzero(secret, KW_KEY_BUFSZ);
    if (rc == KW_CLI_EXIT_OK)
        kw_cli_errorf("this is the only time the secret is shown: store it now.");
    return rc;
}

/* How a member reads in human output; buf holds numbers. */
static const char *display(const char *field, const json_t *v, char buf[32])
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_value(v);
    case JSON_INTEGER:
        snprintf(buf, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return strcmp(field, "last_used_at") == 0 || strcmp(field, "expires_at") == 0 ? "never"
                                                                                      : "-";
    default:
        return "-";
    }
}

/* Columns a UTF-8 string takes on a terminal, counting one per code point. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void pad(size_t n)
{
    while (n-- > 0)
        putchar(' ');
}

void kw_cli_print_fields(const json_t *obj, const char *const *fields)
{
    size_t width = 0;
    for (const char *const *f = fields; *f; f++)
        if (json_object_get(obj, *f) && strlen(*f) > width)
            width = strlen(*f);
    for (const char *const *f = fields; *f; f++) {
        const json_t *v = json_object_get(obj, *f);
        char buf[32];
        if (!v)
            continue;
        printf("%s:", *f);
        pad(width - strlen(*f) + 1);
        printf("%s\n", display(*f, v, buf));
    }
}

int kw_cli_emit_object(const kw_cli *cli, const json_t *doc, const char *const *fields)
{
    if (!doc) {
        kw_cli_errorf("out of memory");
        return KW_CLI_EXIT_FAIL;
    }
    if (cli->json)
        return kw_cli_print_json(doc);
    kw_cli_print_fields(doc, fields);
    return KW_CLI_EXIT_OK;
}

/* Prints one table row: the cells padded to widths, two spaces apart. */
static void print_row(const char *const *cells, const size_t *widths, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++) {
        fputs(cells[c], stdout);
        if (c + 1 < ncols)
            pad(widths[c] - text_width(cells[c]) + 2);
    }
    putchar('\n');
}

int kw_cli_emit_table(const kw_cli *cli, const json_t *doc, const char *member,
                      const char *const *fields, const char *empty)
{
    if (!doc) {
        kw_cli_errorf("out of memory");
        return KW_CLI_EXIT_FAIL;
    }
    if (cli->json)
        return kw_cli_print_json(doc);
    const json_t *rows = json_object_get(doc, member);
    size_t nrows = json_array_size(rows), ncols = 0;
    if (nrows == 0) {
        puts(empty);
        return KW_CLI_EXIT_OK;
    }
    while (fields[ncols])
        ncols++;
    enum { MAXCOLS = 16 };
    const char *cells[MAXCOLS];
    char header[MAXCOLS][32], nums[MAXCOLS][32];
    size_t widths[MAXCOLS] = {0};
    if (ncols > MAXCOLS)
        ncols = MAXCOLS;
    for (size_t c = 0; c < ncols; c++) {
        size_t i = 0;
        for (; fields[c][i] && i + 1 < sizeof header[c]; i++)
            header[c][i] = (char)(fields[c][i] == '_' ? ' ' : toupper((unsigned char)fields[c][i]));
        header[c][i] = '\0';
        cells[c] = header[c];
        widths[c] = text_width(header[c]);
    }
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const json_t *v = json_object_get(json_array_get(rows, r), fields[c]);
            size_t w = text_width(v ? display(fields[c], v, nums[c]) : "-");
            if (w > widths[c])
                widths[c] = w;
        }
    }
    print_row(cells, widths, ncols);
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const json_t *v = json_object_get(json_array_get(rows, r), fields[c]);
            cells[c] = v ? display(fields[c], v, nums[c]) : "-";
        }
        print_row(cells, widths, ncols);
    }
    return KW_CLI_EXIT_OK;
}

/* Turns terminal echo off (on = false) or back on; *saved keeps the old mode. */
static bool set_echo(bool on, struct termios *saved)
{
    if (on)
        return tcsetattr(STDIN_FILENO, TCSANOW, saved) == 0;
    struct termios t;
    if (tcgetattr(STDIN_FILENO, saved) != 0)
        return false;
    t = *saved;
    t.c_lflag &= ~(tcflag_t)ECHO;
    /* TCSANOW, not TCSAFLUSH: a key pasted before the prompt is kept. */
    return tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
}

kw_status kw_cli_read_secret(const char *what, const char *prompt, char *buf, size_t size,
                             size_t *len, kw_error *err)
{
    const bool tty = isatty(STDIN_FILENO);
    struct termios saved;
    const bool quiet = tty && set_echo(false, &saved);
    if (tty && prompt)
        kw_cli_errorf("%s", prompt);
    size_t got = 0;
    bool more = false;
    int failed = 0; /* errno of a failed read */

    for (;;) {
        if (got == size - 1) {
            char extra; /* one byte past the buffer: is there more? */
            ssize_t n = read(STDIN_FILENO, &extra, 1);
            more = n > 0;
            sodium_memzero(&extra, sizeof extra);
            break;
        }
        ssize_t n = read(STDIN_FILENO, buf + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            failed = errno;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (tty && buf[got - 1] == '\n')
            break;
    }
    if (quiet) {
        set_echo(true, &saved);
        fputc('\n', stderr);
    }
    if (more || failed) {
        sodium_memzero(buf, size);
        if (failed)
            return kw_error_set(err, KW_ERR_INVALID, "cannot read the %s from stdin: %s.", what,
                                strerror(failed));
        return kw_error_set(err, KW_ERR_INVALID, "the %s on stdin is too long (over %zu bytes).",
                            what, size - 3);
    }
    if (got > 0 && buf[got - 1] == '\n') {
        got--;
        if (got > 0 && buf[got - 1] == '\r')
            got--;
    }
    buf[got] = '\0';
    *len = got;
    return KW_OK;
}
