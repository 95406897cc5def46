/*
 * testdb.h - the throwaway database every identity unit suite runs against: a SQLite file in a
 * fresh temporary directory, and, when the suite runs its PostgreSQL group
 * (COFFER_TEST_PG_URL set), a fresh database on that cluster, dropped afterwards. Included
 * once per test program; main sets pg_base_url and use_pg.
 */
#ifndef COFFER_TESTS_IDENTITY_TESTDB_H
#define COFFER_TESTS_IDENTITY_TESTDB_H

#include <dirent.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TESTDB_NAME_BYTES 64 /* "coffer_<tag>_<pid>_<n>" */
#define TESTDB_DIR_BYTES 64

static const char *pg_base_url; /* COFFER_TEST_PG_URL, or NULL */
static bool use_pg;             /* the group being run */
static unsigned db_seq;

/* Runs one statement on url; false (and a line on stderr) when it fails. */
static bool pg_run(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *res = PQexec(c, sql);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            fprintf(stderr, "test sql failed: %s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
    } else {
        fprintf(stderr, "test connection failed: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

/* base with its database path replaced by db; the query string is kept. */
static bool url_with_db(const char *base, const char *db, char *out, size_t out_bytes)
{
    const char *scheme = strstr(base, "://");
    if (scheme == NULL)
        return false;
    const char *path = scheme + 3 + strcspn(scheme + 3, "/?");
    const char *query = strchr(path, '?');
    int n = snprintf(out, out_bytes, "%.*s/%s%s", (int)(path - base), base, db,
                     query != NULL ? query : "");
    return n > 0 && (size_t)n < out_bytes;
}

/* Makes dir (a temporary directory, always: suites keep files there) and the database target:
 * DIR/id.db, or a new PostgreSQL database named after tag (with icu, one whose ordering is not
 * bytewise when the server can make it). */
static bool testdb_create(const char *tag, bool icu, char dir[TESTDB_DIR_BYTES],
                          char pg_name[TESTDB_NAME_BYTES], char *target, size_t target_bytes)
{
    snprintf(dir, TESTDB_DIR_BYTES, "/tmp/coffer-%s.XXXXXX", tag);
    if (mkdtemp(dir) == NULL)
        return false;
    if (!use_pg) {
        pg_name[0] = '\0';
        return (size_t)snprintf(target, target_bytes, "%s/id.db", dir) < target_bytes;
    }
    char sql[TESTDB_NAME_BYTES + 96];
    snprintf(pg_name, TESTDB_NAME_BYTES, "coffer_%s_%ld_%u", tag, (long)getpid(), ++db_seq);
    bool made = false;
    if (icu) {
        snprintf(sql, sizeof(sql),
                 "CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'",
                 pg_name);
        made = pg_run(pg_base_url, sql);
    }
    if (!made) {
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", pg_name);
        made = pg_run(pg_base_url, sql);
    }
    return made && url_with_db(pg_base_url, pg_name, target, target_bytes);
}

/* Drops the PostgreSQL database (if any) and removes dir with the files in it. */
static void testdb_drop(const char *dir, const char *pg_name)
{
    if (pg_name[0] != '\0') {
        char sql[TESTDB_NAME_BYTES + 48];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_name);
        pg_run(pg_base_url, sql);
    }
    DIR *d = dir[0] != '\0' ? opendir(dir) : NULL;
    if (d == NULL)
        return;
    struct dirent *e;
    char path[TESTDB_DIR_BYTES + 300];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < sizeof(path))
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

#endif
