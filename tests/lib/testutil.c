#include "testutil.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

char *tu_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/keyward-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        abort();
    return strdup(tmpl);
}

/* ---- PostgreSQL databases, one per test directory ---- */

enum { MAX_DATABASES = 64 };

static struct {
    char *dir;
    char *url;
    char name[40];
} databases[MAX_DATABASES];
static pthread_mutex_t databases_lock = PTHREAD_MUTEX_INITIALIZER;

const char *tu_pg_server(void)
{
    const char *url = getenv("KEYWARD_TEST_STORE_URL");
    return url && *url ? url : NULL;
}

const char *tu_pg_exec(const char *url, const char *sql)
{
    static _Thread_local char state[6];
    char admin[1024];
    if (!url) {
        snprintf(admin, sizeof admin, "%s/postgres", tu_pg_server());
        url = admin;
    }
    PGconn *db = PQconnectdb(url);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "tu_pg_exec: %s", PQerrorMessage(db));
        PQfinish(db);
        snprintf(state, sizeof state, "08006");
        return state;
    }
    PGresult *res = PQexec(db, sql);
    ExecStatusType rs = PQresultStatus(res);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof state, "%s",
             rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK ? ""
             : code                                          ? code
                                                             : "XX000");
    PQclear(res);
    PQfinish(db);
    return state;
}

const char *tu_store_url(const char *dir)
{
    const char *server = tu_pg_server();
    if (!server)
        abort();
    pthread_mutex_lock(&databases_lock);
    const char *url = NULL;
    int free_slot = -1;
    for (int i = 0; i < MAX_DATABASES && !url; i++) {
        if (databases[i].dir && strcmp(databases[i].dir, dir) == 0)
            url = databases[i].url;
        else if (!databases[i].dir && free_slot < 0)
            free_slot = i;
    }
    if (!url) {
        if (free_slot < 0)
            abort();
        unsigned char rnd[8];
        randombytes_buf(rnd, sizeof rnd);
        char *name = databases[free_slot].name;
        memcpy(name, "kwtest_", 8);
        sodium_bin2hex(name + 7, sizeof databases[free_slot].name - 7, rnd, sizeof rnd);
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        if (*tu_pg_exec(NULL, sql))
            abort();
        size_t len = strlen(server) + strlen(name) + 2;
        databases[free_slot].url = malloc(len);
        snprintf(databases[free_slot].url, len, "%s/%s", server, name);
        databases[free_slot].dir = strdup(dir);
        url = databases[free_slot].url;
    }
    pthread_mutex_unlock(&databases_lock);
    return url;
}

/* Drops the database of dir, if it has one; FORCE ends connections left open. */
static void drop_database(const char *dir)
{
    pthread_mutex_lock(&databases_lock);
    for (int i = 0; i < MAX_DATABASES; i++) {
        if (!databases[i].dir || strcmp(databases[i].dir, dir) != 0)
            continue;
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", databases[i].name);
        tu_pg_exec(NULL, sql);
        free(databases[i].dir);
        free(databases[i].url);
        databases[i].dir = databases[i].url = NULL;
    }
    pthread_mutex_unlock(&databases_lock);
}

static void tu_rmtree_files(const char *dir);

void tu_rmtree(const char *dir)
{
    drop_database(dir);
    tu_rmtree_files(dir);
}

/* The files of tu_rmtree. */
static void tu_rmtree_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            tu_rmtree_files(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void tu_config(kw_config *cfg, const char *dir)
{
    kw_config_defaults(cfg);
    cfg->data_dir = dir;
    cfg->last_used_interval_ms = 100;
    if (tu_pg_server())
        cfg->store_url = tu_store_url(dir);
}

kw_service *tu_service(char **dir)
{
    *dir = tu_tempdir();
    kw_config cfg;
    tu_config(&cfg, *dir);
    kw_service *svc = NULL;
    kw_error err;
    if (kw_service_open(&cfg, &svc, &err) != KW_OK) {
        fprintf(stderr, "kw_service_open: %s\n", err.message);
        abort();
    }
    return svc;
}

unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

int tu_contains(const unsigned char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    if (m == 0 || m > n)
        return 0;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == (unsigned char)needle[0] && memcmp(hay + i, needle, m) == 0)
            return 1;
    return 0;
}
