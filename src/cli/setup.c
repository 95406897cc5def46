/* setup.c - the identity side of a data directory; see setup.h. */
#include "cli/setup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"

void cli_identity_target(const struct config *c, char *out, size_t out_bytes)
{
    if (c->db[0] != '\0')
        snprintf(out, out_bytes, "%s", c->db);
    else
        snprintf(out, out_bytes, "%s/%s", c->data, CLI_IDENTITY_DB_NAME);
}

/* Writes text to path atomically (a 0600 temporary file, fsync, rename). */
static enum cf_err file_replace(const char *path, const char *text)
{
    char tmp[CONFIG_PATH_BYTES_MAX + 8];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp))
        return CF_ERR_CONFIG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "coffer: cannot write %s: %s\n", tmp, strerror(errno));
        return CF_ERR_IO;
    }
    size_t len = strlen(text);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        fprintf(stderr, "coffer: cannot replace %s\n", path);
        return CF_ERR_IO;
    }
    return CF_OK;
}

static enum cf_err keys_load(const struct config *c, bool create, struct cli_identity *ci)
{
    const char *env = getenv("COFFER_MASTER_KEYS");
    if (env != NULL) {
        ci->key_path[0] = '\0';
        enum cf_err err = vault_load(env, strlen(env), &ci->vault);
        if (err != CF_OK)
            fprintf(stderr, "coffer: COFFER_MASTER_KEYS is not a valid key list\n");
        return err;
    }
    if (c->master_key_file[0] != '\0')
        snprintf(ci->key_path, sizeof(ci->key_path), "%s", c->master_key_file);
    else if ((size_t)snprintf(ci->key_path, sizeof(ci->key_path), "%s/%s", c->data,
                              CLI_KEY_FILE_NAME) >= sizeof(ci->key_path))
        return CF_ERR_CONFIG;
    if (access(ci->key_path, F_OK) != 0 && create) {
        char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
        enum cf_err err =
            text == NULL ? CF_ERR_NOMEM : vault_keyfile_new(NULL, text, VAULT_KEYFILE_BYTES_MAX);
        if (err == CF_OK)
            err = file_replace(ci->key_path, text);
        if (text != NULL)
            hash_wipe(text, VAULT_KEYFILE_BYTES_MAX);
        free(text);
        if (err != CF_OK)
            return err;
        cf_log(LOG_INFO, "created a master key file; keep a copy apart from the backups", "path",
               ci->key_path, NULL);
    }
    enum cf_err err = vault_load_file(ci->key_path, &ci->vault);
    if (err != CF_OK)
        fprintf(stderr,
                "coffer: cannot load the master keys from %s (missing, malformed, or "
                "readable by others)\n",
                ci->key_path);
    return err;
}

enum cf_err cli_identity_open(const struct config *c, bool create, struct cli_identity *out)
{
    memset(out, 0, sizeof(*out));
    char target[CONFIG_PATH_BYTES_MAX + 32];
    cli_identity_target(c, target, sizeof(target));
    enum cf_err err = keys_load(c, create, out);
    if (err == CF_OK && (err = sqldb_open(target, &out->db)) != CF_OK)
        fprintf(stderr, "coffer: cannot open the identity database\n");
    if (err == CF_OK && c->notifier_url[0] != '\0') {
        const char *secret = getenv("COFFER_NOTIFIER_SECRET");
        err = notifier_http_create(c->notifier_url, secret != NULL ? secret : "", &out->notifier);
        if (err != CF_OK)
            fprintf(stderr, "coffer: notifier_url needs https (or a loopback http URL) and "
                            "COFFER_NOTIFIER_SECRET\n");
    } else if (err == CF_OK) {
        err = notifier_outbox_create(out->db, out->vault, &out->notifier);
    }
    struct identity_config ic;
    identity_config_defaults(&ic);
    ic.session_idle_s = c->session_idle_s;
    ic.session_absolute_s = c->session_absolute_s;
    ic.step_up_amount_minor = c->step_up_amount_minor;
    ic.key_file = out->key_path[0] != '\0' ? out->key_path : NULL;
    if (err == CF_OK)
        err = identity_open(out->db, out->vault, out->notifier, &ic, &out->identity);
    if (err != CF_OK)
        cli_identity_close(out);
    return err;
}

void cli_identity_close(struct cli_identity *ci)
{
    identity_close(ci->identity);
    notifier_free(ci->notifier);
    if (ci->db != NULL)
        sqldb_close(ci->db);
    vault_free(ci->vault);
    memset(ci, 0, sizeof(*ci));
}

/* admin ------------------------------------------------------------------------------------ */

int cli_cmd_admin(const struct config *c, int argc, char **argv)
{
    const char *login = NULL, *name = NULL, *role_text = "admin";
    if (argc < 3 || strcmp(argv[2], "create") != 0) {
        fprintf(stderr, "usage: coffer admin create --login LOGIN --name NAME [--role ROLE]\n");
        return 2;
    }
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--login") == 0)
            login = argv[i + 1];
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--role") == 0)
            role_text = argv[i + 1];
    }
    const char *pw = getenv("COFFER_ADMIN_PASSWORD");
    enum identity_role role;
    if (login == NULL || name == NULL || pw == NULL ||
        identity_role_parse(role_text, &role) != CF_OK || !identity_role_is_staff(role)) {
        fprintf(stderr, "coffer admin create: give --login and --name, a staff --role (admin, "
                        "support, risk, auditor) and the password in COFFER_ADMIN_PASSWORD\n");
        return 2;
    }
    struct cli_identity ci;
    if (cli_identity_open(c, true, &ci) != CF_OK)
        return 1;
    char user_id[ID_TEXT_BYTES_MAX];
    const char *detail = NULL;
    struct identity_ctx ctx = {.ip = "", .user_agent = "coffer admin create"};
    enum cf_err err = identity_staff_create(ci.identity, &ctx, "cli", login, pw, strlen(pw), name,
                                            role, user_id, &detail);
    cli_identity_close(&ci);
    if (err != CF_OK) {
        fprintf(stderr, "coffer admin create: %s%s%s\n", cf_err_title(err),
                detail != NULL ? ": " : "", detail != NULL ? detail : "");
        return 1;
    }
    printf("coffer: created %s %s; the first sign-in enrols an authenticator\n", role_text,
           user_id);
    return 0;
}

/* keys ------------------------------------------------------------------------------------- */

int cli_cmd_keys(const struct config *c, int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[2], "rotate") != 0) {
        fprintf(stderr, "usage: coffer keys rotate [--data DIR] [--db URL]\n");
        return 2;
    }
    struct cli_identity ci;
    if (cli_identity_open(c, false, &ci) != CF_OK)
        return 1;
    if (ci.key_path[0] == '\0') {
        cli_identity_close(&ci);
        fprintf(stderr, "coffer keys rotate: the keys come from COFFER_MASTER_KEYS; add a key "
                        "line (next id) there, restart, then run this with a key file\n");
        return 2;
    }
    char *text = malloc(VAULT_KEYFILE_BYTES_MAX);
    enum cf_err err =
        text == NULL ? CF_ERR_NOMEM : vault_keyfile_new(ci.vault, text, VAULT_KEYFILE_BYTES_MAX);
    if (err == CF_OK)
        err = file_replace(ci.key_path, text);
    if (text != NULL)
        hash_wipe(text, VAULT_KEYFILE_BYTES_MAX);
    free(text);
    cli_identity_close(&ci);
    /* reopen with the new key active, and re-wrap every data key under it */
    size_t n = 0;
    if (err == CF_OK && (err = cli_identity_open(c, false, &ci)) == CF_OK) {
        err = identity_keys_rotate(ci.identity, &n);
        printf("coffer: master key %u is active; %zu data keys re-wrapped\n",
               vault_active_id(ci.vault), n);
        cli_identity_close(&ci);
    }
    if (err != CF_OK) {
        fprintf(stderr, "coffer keys rotate: %s\n", cf_err_title(err));
        return 1;
    }
    return 0;
}

/* backup ------------------------------------------------------------------------------------- */

static enum cf_err backup_one(const char *src, const char *dest)
{
    struct sqldb *db = NULL;
    enum cf_err err = sqldb_open(src, &db);
    if (err == CF_OK) {
        err = sqldb_backup(db, dest);
        sqldb_close(db);
    }
    if (err != CF_OK)
        fprintf(stderr, "coffer backup: cannot copy %s\n", src);
    return err;
}

int cli_cmd_backup(const struct config *c, int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
    }
    if (out == NULL) {
        fprintf(stderr, "usage: coffer backup --out DIR [--data DIR]\n");
        return 2;
    }
    if (c->db[0] != '\0') {
        fprintf(stderr, "coffer backup: with PostgreSQL use pg_dump or a base backup\n");
        return 2;
    }
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "coffer backup: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    static const char *const files[] = {"coffer.db", CLI_IDENTITY_DB_NAME};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char src[CONFIG_PATH_BYTES_MAX + 32], dest[CONFIG_PATH_BYTES_MAX + 32];
        snprintf(src, sizeof(src), "%s/%s", c->data, files[i]);
        snprintf(dest, sizeof(dest), "%s/%s", out, files[i]);
        if (access(src, F_OK) != 0)
            continue;
        if (backup_one(src, dest) != CF_OK)
            return 1;
        printf("coffer: %s -> %s\n", src, dest);
    }
    printf("coffer: the master key file is not in the backup; keep it apart\n");
    return 0;
}

/* audit ------------------------------------------------------------------------------------- */

int cli_audit_verify(const struct config *c)
{
    char target[CONFIG_PATH_BYTES_MAX + 32];
    cli_identity_target(c, target, sizeof(target));
    if (c->db[0] == '\0' && access(target, F_OK) != 0) {
        printf("ok: audit log: empty (no identity database yet)\n");
        return 0;
    }
    struct sqldb *db = NULL;
    enum cf_err err = sqldb_open(target, &db);
    uint64_t n = 0, bad = 0;
    if (err == CF_OK) {
        err = audit_verify(db, &n, &bad);
        sqldb_close(db);
    }
    if (err == CF_ERR_CORRUPT) {
        printf("FAILED: audit log: record %llu breaks the hash chain\n", (unsigned long long)bad);
        return 1;
    }
    if (err != CF_OK) {
        printf("FAILED: audit log: %s\n", cf_err_title(err));
        return 1;
    }
    printf("ok: audit log: %llu records, chain intact\n", (unsigned long long)n);
    return 0;
}
