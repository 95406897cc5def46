/* reconcile.c - `coffer reconcile`; see reconcile.h.
 *
 * Opens the service database as `coffer admin create` does (cli_identity_open: the master keys,
 * DATA/identity.db or the --db URL) and the payments tables on it, reads the file whole (at most
 * RECONCILE_FILE_BYTES_MAX bytes) into an arena of RECONCILE_ARENA_BYTES_MAX, and runs
 * payments_reconcile. It only reads, so it may run beside a serving process: on SQLite each of
 * its short transactions waits for the server's (BEGIN IMMEDIATE and the busy timeout), and the
 * one line it writes to the audit log is appended under the log's head row like any other.
 */
#include "cli/reconcile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/setup.h"
#include "core/clock.h"
#include "payments/reconcile.h"

/* A mismatch's line: two sides of four fields, an id and two references. */
#define LINE_BYTES_MAX 768

static const struct vault *keys_of(void *ctx, uint32_t key_id)
{
    return identity_keys(ctx, key_id);
}

/* Reads path whole into the arena: *len_out bytes (NUL-terminated). */
static int file_read(const char *path, struct arena *arena, char **text_out, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "coffer reconcile: cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *buf = arena_alloc(arena, RECONCILE_FILE_BYTES_MAX + 2);
    size_t n = 0;
    ssize_t got = 1;
    while (buf != NULL && got > 0 && n <= RECONCILE_FILE_BYTES_MAX) {
        got = read(fd, buf + n, RECONCILE_FILE_BYTES_MAX + 1 - n);
        if (got > 0)
            n += (size_t)got;
        else if (got < 0 && errno == EINTR)
            got = 1;
    }
    close(fd);
    if (buf == NULL || got < 0) {
        fprintf(stderr, "coffer reconcile: cannot read %s\n", path);
        return 2;
    }
    if (n > RECONCILE_FILE_BYTES_MAX) {
        fprintf(stderr, "coffer reconcile: %s is larger than %d bytes\n", path,
                RECONCILE_FILE_BYTES_MAX);
        return 2;
    }
    buf[n] = '\0';
    *text_out = buf;
    *len_out = n;
    return 0;
}

/* --from D and --to D among argv[3...]; the rest are flags cli.c already applied. */
static int window_flags(int argc, char **argv, int64_t *from_us, int64_t *to_us)
{
    const char *from = NULL, *to = NULL;
    for (int i = 3; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--from") == 0)
            from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0)
            to = argv[++i];
        else if (strncmp(argv[i], "--", 2) == 0)
            i++; /* --data DIR, --db URL, ...: a flag and its value */
    }
    struct recon_error e;
    if (recon_window_parse(from, to, from_us, to_us, &e) != CF_OK) {
        fprintf(stderr, "coffer reconcile: --%s: %s\n", e.field, e.message);
        return 2;
    }
    return 0;
}

static void report_print(const struct recon_report *r)
{
    char line[LINE_BYTES_MAX];
    const struct recon_result *res = &r->result;
    for (size_t i = 0; i < res->mismatches_n; i++) {
        recon_mismatch_format(&res->mismatches[i], r->rows, r->ops, line, sizeof(line));
        printf("%s\n", line);
    }
    char from[40] = "the beginning", to[40] = "now";
    if (r->from_us > 0)
        cf_time_format_rfc3339(r->from_us, from, sizeof(from));
    if (r->to_us < INT64_MAX)
        cf_time_format_rfc3339(r->to_us, to, sizeof(to));
    printf("reconcile: %zu rows, %zu operations (made from %s to %s, a day around included), "
           "%zu matched, %zu mismatches",
           r->rows_n, r->ops_n, from, to, res->matched, res->mismatches_n);
    const char *sep = " (";
    for (uint8_t k = 1; k <= RECON_KIND_MAX; k++) {
        if (res->by_kind[k] == 0)
            continue;
        printf("%s%s %zu", sep, recon_kind_name(k), res->by_kind[k]);
        sep = ", ";
    }
    printf("%s\n", res->mismatches_n > 0 ? ")" : "");
}

/* Opens the database and the payments tables, runs the comparison, prints it. */
static int reconcile_run(const struct config *c, const char *text, size_t len, int64_t from_us,
                         int64_t to_us, struct arena *arena)
{
    struct cli_identity ci;
    struct payments *p = NULL;
    if (cli_identity_open(c, false, &ci) != CF_OK)
        return 2;
    struct recon_report r;
    struct recon_error e = {.field = "csv"};
    enum cf_err err = payments_open(ci.db, keys_of, ci.identity, &p);
    if (err == CF_OK)
        err = payments_reconcile(p, text, len, from_us, to_us, arena, &r, &e);
    struct identity_ctx ctx = {.ip = "", .user_agent = "coffer reconcile"};
    char detail[96] = "";
    if (err == CF_OK)
        snprintf(detail, sizeof(detail), "rows=%zu operations=%zu mismatches=%zu", r.rows_n,
                 r.ops_n, r.result.mismatches_n);
    if (p != NULL)
        cf_best_effort(identity_audit(ci.identity, &ctx, "cli", "payments.reconcile", "",
                                      err == CF_OK ? "ok" : "failed", detail));
    payments_close(p);
    cli_identity_close(&ci);
    if (err == CF_ERR_INVALID_FIELD || err == CF_ERR_PAYLOAD_TOO_LARGE) {
        if (e.line > 0)
            fprintf(stderr, "coffer reconcile: %s: line %u: %s\n", e.field, (unsigned)e.line,
                    e.message);
        else
            fprintf(stderr, "coffer reconcile: %s: %s\n", e.field, e.message);
        return 2;
    }
    if (err != CF_OK) {
        fprintf(stderr, "coffer reconcile: %s\n", cf_err_title(err));
        return 2;
    }
    report_print(&r);
    return r.result.mismatches_n > 0 ? 1 : 0;
}

int cli_cmd_reconcile(const struct config *c, int argc, char **argv)
{
    CF_ASSERT(c != NULL && argc >= 2 && argv != NULL);
    bool help = argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
    if (argc < 3 || argv[2][0] == '-') {
        fprintf(help ? stdout : stderr, "usage: coffer reconcile FILE [--from DATE] [--to DATE] "
                                        "[--data DIR] [--db URL] (FILE --help: more)\n");
        return help ? 0 : 2;
    }
    int64_t from_us = 0, to_us = 0;
    int rc = window_flags(argc, argv, &from_us, &to_us);
    if (rc != 0)
        return rc;
    struct arena *arena = arena_create(RECONCILE_ARENA_BYTES_MAX);
    if (arena == NULL) {
        fprintf(stderr, "coffer reconcile: out of memory\n");
        return 2;
    }
    char *text = NULL;
    size_t len = 0;
    rc = file_read(argv[2], arena, &text, &len);
    if (rc == 0)
        rc = reconcile_run(c, text, len, from_us, to_us, arena);
    arena_destroy(arena);
    CF_ASSERT(rc >= 0 && rc <= 2);
    return rc;
}
