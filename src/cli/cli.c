/* cli.c - subcommands and flags of the coffer binary; see cli.h. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/config.h"
#include "core/hash.h"
#include "core/log.h"
#include "ledger/verify.h"
#include "money/currency.h"

#define TOKEN_META_KEY "operator_token_sha256"
#define TOKEN_BYTES 32

static const char usage_main[] =
    "usage: coffer <command> [options]\n\n"
    "commands:\n"
    "  serve     run the server (creates the data directory on first start)\n"
    "  init      create the data directory and the operator token, then exit\n"
    "  verify    check the journal's hash chain and every ledger invariant\n"
    "  routes    print the API route table\n"
    "  version   print the version\n\n"
    "options (serve, init, verify):\n"
    "  --data DIR          data directory (default ./var, env COFFER_DATA)\n"
    "  --db URL            postgresql://... to use PostgreSQL instead of SQLite in DIR\n"
    "                      (env COFFER_DB)\n"
    "  --listen HOST:PORT  address to serve on (default 127.0.0.1:8080, env COFFER_LISTEN)\n"
    "  --config FILE       config file of key = value lines (env COFFER_CONFIG)\n"
    "  --log-level LEVEL   debug, info, warn or error (env COFFER_LOG_LEVEL)\n"
    "  --help              this text\n\n"
    "The operator token comes from COFFER_OPERATOR_TOKEN on first start, or is generated and\n"
    "written to DIR/operator.token (mode 0600). Only its SHA-256 is stored.\n";

static const char *const usage_cmd[][2] = {
    {"serve", "usage: coffer serve [--data DIR] [--db URL] [--listen HOST:PORT]\n"
              "                    [--config FILE] [--log-level LEVEL]\n"
              "Serves the API until SIGINT or SIGTERM, then drains queued writes and stops.\n"},
    {"init", "usage: coffer init [--data DIR] [--db URL] [--config FILE]\n"
             "Creates the database and the operator token if they do not exist.\n"},
    {"verify", "usage: coffer verify [--data DIR] [--db URL] [--config FILE]\n"
               "Recomputes the hash chain, re-sums every account from the journal and checks\n"
               "every invariant. Prints 'ok' with counts and exits 0, or prints each problem\n"
               "and exits 1. Safe on a stopped server's data directory (and on a running one:\n"
               "it reads one snapshot).\n"},
    {"routes", "usage: coffer routes\nPrints METHOD PATH SCOPE IDEMPOTENT per route.\n"},
    {"version", "usage: coffer version\n"},
};

static void usage_print(const char *cmd)
{
    for (size_t i = 0; i < sizeof(usage_cmd) / sizeof(usage_cmd[0]); i++) {
        if (strcmp(usage_cmd[i][0], cmd) == 0) {
            fputs(usage_cmd[i][1], stdout);
            return;
        }
    }
    fputs(usage_main, stdout);
}

/* Parses flags after the subcommand. Returns 0 to go on, 1 after --help, 2 on a bad flag. */
static int flags_parse(int argc, char **argv, struct config *c, const char *cmd)
{
    const char *cfg = getenv("COFFER_CONFIG");
    if (cfg != NULL)
        snprintf(c->config_path, sizeof(c->config_path), "%s", cfg);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            snprintf(c->config_path, sizeof(c->config_path), "%s", argv[++i]);
    }
    if (config_load_file(c) != CF_OK || config_load_env(c) != CF_OK)
        return 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *key = strcmp(a, "--data") == 0        ? "data"
                          : strcmp(a, "--db") == 0        ? "db"
                          : strcmp(a, "--listen") == 0    ? "listen"
                          : strcmp(a, "--log-level") == 0 ? "log_level"
                                                          : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_print(cmd);
            return 1;
        }
        if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (key == NULL || i + 1 >= argc) {
            fprintf(stderr, "coffer %s: unknown or incomplete option '%s' (see --help)\n", cmd, a);
            return 2;
        }
        if (config_set(c, key, argv[++i]) != CF_OK)
            return 2;
    }
    return 0;
}

static enum cf_err common_setup(const struct config *c)
{
    int level = cf_log_level_parse(c->log_level);
    if (level < 0) {
        fprintf(stderr, "coffer: log_level must be debug, info, warn or error\n");
        return CF_ERR_CONFIG;
    }
    cf_log_set_level((enum log_level)level);
    if (hash_init() != 0)
        return CF_ERR_INTERNAL;
    if (currency_assets_parse(c->assets) != CF_OK) {
        fprintf(stderr, "coffer: assets: expected CODE:SCALE,... with new codes, scale 0..4\n");
        return CF_ERR_CONFIG;
    }
    return CF_OK;
}

static enum cf_err store_open_cfg(const struct config *c, bool read_only, struct store **out)
{
    /* the data directory holds the token file (and the SQLite database) whatever the store */
    if (!read_only && mkdir(c->data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "coffer: cannot create %s: %s\n", c->data, strerror(errno));
        return CF_ERR_IO;
    }
    struct store_options o = {
        .location = c->db[0] != '\0' ? c->db : c->data,
        .readers = read_only ? 1 : c->readers,
        .read_only = read_only,
        .create = !read_only,
    };
    return store_open(&o, out);
}

static enum cf_err token_file_write(const char *data, const char *token, char *path,
                                    size_t path_bytes)
{
    if ((size_t)snprintf(path, path_bytes, "%s/operator.token", data) >= path_bytes)
        return CF_ERR_CONFIG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "coffer: cannot write %s: %s\n", path, strerror(errno));
        return CF_ERR_IO;
    }
    size_t len = strlen(token);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, token, len) == (ssize_t)len &&
              write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    return ok ? CF_OK : CF_ERR_IO;
}

/* Loads the operator token's hash, creating the token on first start. */
static enum cf_err token_setup(struct store *s, const struct config *c,
                               uint8_t hash_out[HASH_BYTES], char *path, size_t path_bytes)
{
    char hex[HASH_HEX_BYTES];
    const char *env = getenv("COFFER_OPERATOR_TOKEN");
    path[0] = '\0';
    enum cf_err err = s->ops->meta_get(s, TOKEN_META_KEY, hex, sizeof(hex));
    if (err == CF_OK) {
        for (int i = 0; i < HASH_BYTES; i++)
            sscanf(hex + 2 * i, "%2hhx", &hash_out[i]);
        if (env != NULL)
            cf_log(LOG_INFO, "COFFER_OPERATOR_TOKEN is used only on first start; ignored", NULL);
        if ((size_t)snprintf(path, path_bytes, "%s/operator.token", c->data) >= path_bytes ||
            access(path, F_OK) != 0)
            path[0] = '\0'; /* the token was given by COFFER_OPERATOR_TOKEN: no file */
        return CF_OK;
    }
    if (err != CF_ERR_NOT_FOUND)
        return err;
    char token[8 + TOKEN_BYTES * 2 + 1];
    if (env != NULL) {
        if (strlen(env) < 16 || strlen(env) >= sizeof(token)) {
            fprintf(stderr, "coffer: COFFER_OPERATOR_TOKEN must have 16 to %zu characters\n",
                    sizeof(token) - 1);
            return CF_ERR_CONFIG;
        }
        snprintf(token, sizeof(token), "%s", env);
    } else {
        uint8_t rnd[TOKEN_BYTES];
        hash_random(rnd, sizeof(rnd));
        memcpy(token, "cft_", 4);
        hash_hex(rnd, sizeof(rnd), token + 4);
        hash_wipe(rnd, sizeof(rnd));
        if ((err = token_file_write(c->data, token, path, path_bytes)) != CF_OK)
            return err;
    }
    hash_sha256(token, strlen(token), hash_out);
    hash_wipe(token, sizeof(token));
    hash_hex(hash_out, HASH_BYTES, hex);
    return s->ops->meta_put(s, TOKEN_META_KEY, hex);
}

static void signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void serve_announce(const struct config *c, const struct http_server *srv,
                           const char *token_path)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", http_server_port(srv));
    cf_log(LOG_INFO, "serving", "listen", c->listen, "port", port, "data", c->data, NULL);
    printf("coffer: serving on http://%s\n", c->listen);
    if (token_path[0] != '\0')
        printf("coffer: operator token in %s\n", token_path);
    else
        printf("coffer: operator token is the COFFER_OPERATOR_TOKEN given on first start\n");
    fflush(stdout);
}

static int cmd_serve(const struct config *c)
{
    sigset_t set;
    signals_block(&set); /* before any thread starts, so all of them inherit the mask */
    struct store *store = NULL;
    struct writer *writer = NULL;
    struct api *api = NULL;
    struct http_server *srv = NULL;
    uint8_t token_hash[HASH_BYTES];
    char token_path[CONFIG_PATH_BYTES_MAX];
    enum cf_err err = store_open_cfg(c, false, &store);
    if (err == CF_OK)
        err = token_setup(store, c, token_hash, token_path, sizeof(token_path));
    if (err == CF_OK)
        err = writer_create(store, &cf_clock_real, &writer);
    if (err == CF_OK)
        err = api_create(store, writer, token_hash, &api);
    hash_wipe(token_hash, sizeof(token_hash));
    struct http_server_config hc = {
        .listen = c->listen, .threads = c->http_threads, .routes = api_routes,
        .routes_n = api_routes_n, .authorize = api_authorize, .problem = api_problem, .app = api};
    if (err == CF_OK)
        err = http_server_start(&hc, &srv);
    if (err == CF_OK) {
        api->server = srv;
        serve_announce(c, srv, token_path);
        int sig = 0;
        sigwait(&set, &sig);
        cf_log(LOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
        http_server_quiesce(srv);
        writer_stop(writer); /* drains the queue: every suspended request is resumed */
        usleep(200 * 1000);  /* lets resumed connections send their answers */
        http_server_stop(srv);
    }
    writer_destroy(writer);
    api_destroy(api);
    if (store != NULL)
        store->ops->close(store);
    if (err != CF_OK) {
        fprintf(stderr, "coffer serve: %s\n", cf_err_title(err));
        return 1;
    }
    cf_log(LOG_INFO, "stopped", NULL);
    return 0;
}

static int cmd_init(const struct config *c)
{
    struct store *store = NULL;
    uint8_t token_hash[HASH_BYTES];
    char token_path[CONFIG_PATH_BYTES_MAX];
    enum cf_err err = store_open_cfg(c, false, &store);
    if (err == CF_OK)
        err = token_setup(store, c, token_hash, token_path, sizeof(token_path));
    if (store != NULL)
        store->ops->close(store);
    if (err != CF_OK) {
        fprintf(stderr, "coffer init: %s\n", cf_err_title(err));
        return 1;
    }
    printf("coffer: data directory %s is ready\n", c->data);
    if (token_path[0] != '\0')
        printf("coffer: operator token in %s\n", token_path);
    return 0;
}

static void verify_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("error: %s\n", line);
}

static int cmd_verify(const struct config *c)
{
    struct store *store = NULL;
    enum cf_err err = store_open_cfg(c, true, &store);
    if (err != CF_OK) {
        fprintf(stderr, "coffer verify: cannot open the ledger in %s: %s\n", c->data,
                cf_err_title(err));
        return 1;
    }
    struct verify_report rep;
    err = ledger_verify(store, &rep, verify_line, NULL);
    store->ops->close(store);
    if (err != CF_OK) {
        fprintf(stderr, "coffer verify: %s\n", cf_err_title(err));
        return 1;
    }
    char head[HASH_HEX_BYTES];
    hash_hex(rep.head_hash, HASH_BYTES, head);
    if (rep.problems > 0) {
        printf("FAILED: %llu problems in %llu accounts, %llu transfers\n",
               (unsigned long long)rep.problems, (unsigned long long)rep.accounts,
               (unsigned long long)rep.entries);
        return 1;
    }
    printf("ok: %llu accounts, %llu transfers, %llu currencies, chain head %s\n",
           (unsigned long long)rep.accounts, (unsigned long long)rep.entries,
           (unsigned long long)rep.currencies, head);
    return 0;
}

static int cmd_routes(void)
{
    for (size_t i = 0; i < api_routes_n; i++) {
        const struct http_route *r = &api_routes[i];
        printf("%s %s %s %s\n", http_method_name(r->method), r->pattern,
               r->roles == HTTP_PUBLIC ? "public" : "operator",
               r->idempotent ? "idempotent" : "-");
    }
    return 0;
}

int cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    umask(077); /* the database, the WAL and the token file are for this user alone */
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("coffer %s\n", COFFER_VERSION);
        return 0;
    }
    if (strcmp(cmd, "routes") == 0)
        return argc > 2 ? (usage_print(cmd), 0) : cmd_routes();
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "init") != 0 && strcmp(cmd, "verify") != 0) {
        fprintf(stderr, "coffer: unknown command '%s'\n\n%s", cmd, usage_main);
        return 2;
    }
    struct config c;
    config_defaults(&c);
    int rc = flags_parse(argc, argv, &c, cmd);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (common_setup(&c) != CF_OK)
        return 2;
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(&c);
    if (strcmp(cmd, "init") == 0)
        return cmd_init(&c);
    return cmd_verify(&c);
}
