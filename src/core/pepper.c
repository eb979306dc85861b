/*
 * pepper.c - loading, creating and using the pepper keyring.
 */
#include "core/pepper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define TEXT_MAX 4096

struct kw_pepper {
    size_t count;
    struct {
        uint32_t version;
        crypto_auth_hmacsha256_state keyed; /* state after absorbing the key */
    } v[KW_PEPPER_VERSIONS];
};

/* Parses keyring text into p (sorted, highest version first). */
static kw_status parse_text(const char *text, size_t len, const char *origin, kw_pepper *p,
                            kw_error *err)
{
    size_t i = 0;
    p->count = 0;
    while (i < len) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',') {
            i++;
            continue;
        }
        if (c == '#') {
            while (i < len && text[i] != '\n')
                i++;
            continue;
        }
        size_t start = i;
        while (i < len && !strchr(" \t\r\n,", text[i]))
            i++;
        const char *tok = text + start;
        size_t toklen = i - start;
        const char *colon = memchr(tok, ':', toklen);
        unsigned long version = 1;
        if (colon) {
            char digits[12] = {0};
            size_t dl = (size_t)(colon - tok);
            char *end;
            if (dl == 0 || dl >= sizeof digits)
                goto bad;
            memcpy(digits, tok, dl);
            version = strtoul(digits, &end, 10);
            if (*end || version == 0 || version > INT32_MAX)
                goto bad;
            toklen -= dl + 1;
            tok = colon + 1;
        }
        if (toklen != 2 * KW_PEPPER_BYTES || p->count == KW_PEPPER_VERSIONS)
            goto bad;
        for (size_t k = 0; k < p->count; k++)
            if (p->v[k].version == version)
                goto bad;
        unsigned char key[KW_PEPPER_BYTES];
        size_t bin_len = 0;
        if (sodium_hex2bin(key, sizeof key, tok, toklen, NULL, &bin_len, NULL) != 0 ||
            bin_len != sizeof key) {
            sodium_memzero(key, sizeof key);
            goto bad;
        }
        /* Insert keeping the highest version first. */
        size_t at = p->count;
        while (at > 0 && p->v[at - 1].version < version) {
            p->v[at] = p->v[at - 1];
            at--;
        }
        p->v[at].version = (uint32_t)version;
        crypto_auth_hmacsha256_init(&p->v[at].keyed, key, sizeof key);
        sodium_memzero(key, sizeof key);
        p->count++;
    }
    if (p->count == 0)
        return kw_error_set(err, KW_ERR_INVALID, "%s holds no pepper.", origin);
    return KW_OK;
bad:
    /* Never quote the token: it is (part of) a secret. */
    return kw_error_set(err, KW_ERR_INVALID,
                        "%s is not a valid pepper keyring (expected VERSION:HEX entries with 64 "
                        "hex digits, versions distinct, at most %d).",
                        origin, KW_PEPPER_VERSIONS);
}

/* Creates the pepper file atomically: write a private temp file, then link it
 * into place, which fails if another process won the race. */
static kw_status create_file(const char *path, kw_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.%08x.tmp", path, (long)getpid(),
                 (unsigned)randombytes_random()) >= (int)sizeof tmp)
        return kw_error_set(err, KW_ERR_INVALID, "pepper file path is too long.");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "cannot create pepper file %s: %s.", path,
                            strerror(errno));
    unsigned char key[KW_PEPPER_BYTES];
    char line[2 + 2 * KW_PEPPER_BYTES + 2];
    randombytes_buf(key, sizeof key);
    memcpy(line, "1:", 2);
    sodium_bin2hex(line + 2, sizeof line - 2, key, sizeof key);
    line[sizeof line - 2] = '\n';
    sodium_memzero(key, sizeof key);
    bool ok = write(fd, line, sizeof line - 1) == (ssize_t)(sizeof line - 1) && fsync(fd) == 0;
    sodium_memzero(line, sizeof line);
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(tmp);
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "cannot write pepper file %s.", path);
    }
    int rc = link(tmp, path);
    int saved = errno;
    unlink(tmp);
    if (rc != 0 && saved != EEXIST)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "cannot create pepper file %s: %s.", path,
                            strerror(saved));
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KW_OK;
}

/* Reads the pepper file into text (TEXT_MAX bytes), checking its mode. */
static kw_status read_file(const char *path, bool create, char *text, size_t *len, kw_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        kw_status st = create_file(path, err);
        if (st != KW_OK)
            return st;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return kw_error_set(err, errno == ENOENT ? KW_ERR_INVALID : KW_ERR_UNAVAILABLE,
                            "cannot open pepper file %s: %s.", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kw_error_set(err, KW_ERR_INVALID, "pepper file %s is not a regular file.", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return kw_error_set(err, KW_ERR_INVALID,
                            "pepper file %s is accessible by group or others (mode %04o); "
                            "refusing to start: run chmod 600 on it.",
                            path, (unsigned)(st.st_mode & 07777));
    }
    size_t n = 0;
    ssize_t got;
    while (n < TEXT_MAX && (got = read(fd, text + n, TEXT_MAX - n)) > 0)
        n += (size_t)got;
    close(fd);
    if (n == TEXT_MAX)
        return kw_error_set(err, KW_ERR_INVALID, "pepper file %s is too large.", path);
    *len = n;
    return KW_OK;
}

kw_status kw_pepper_load(const char *path, const char *text, bool create, kw_pepper **out,
                         kw_error *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return kw_error_set(err, KW_ERR_INTERNAL, "libsodium could not be initialised.");
    kw_pepper *p = sodium_malloc(sizeof *p);
    if (!p)
        return kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
    kw_status st;
    if (text) {
        st = parse_text(text, strlen(text), "KEYWARD_PEPPER", p, err);
    } else {
        char buf[TEXT_MAX];
        size_t len = 0;
        char origin[PATH_MAX + 16];
        snprintf(origin, sizeof origin, "pepper file %s", path);
        st = read_file(path, create, buf, &len, err);
        if (st == KW_OK)
            st = parse_text(buf, len, origin, p, err);
        sodium_memzero(buf, sizeof buf);
    }
    if (st != KW_OK) {
        sodium_free(p);
        return st;
    }
    sodium_mprotect_readonly(p);
    *out = p;
    return KW_OK;
}

void kw_pepper_free(kw_pepper *p)
{
    if (p)
        sodium_free(p); /* sodium_free wipes before releasing */
}

size_t kw_pepper_count(const kw_pepper *p)
{
    return p->count;
}

uint32_t kw_pepper_version(const kw_pepper *p, size_t index)
{
    return p->v[index].version;
}

void kw_pepper_hash(const kw_pepper *p, size_t index, const char *msg, size_t len,
                    uint8_t out[KW_HASH_BYTES])
{
    crypto_auth_hmacsha256_state st = p->v[index].keyed;
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}
