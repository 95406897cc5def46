/* cli.c - subcommands and flags of the coffer binary; see cli.h. */
#include "cli/cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cert.h"
#include "cli/config.h"
#include "cli/reconcile.h"
#include "cli/setup.h"
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
    "  cert      create a self-signed development certificate for HTTPS\n"
    "  verify    check the journal's and the audit log's hash chains and every ledger\n"
    "            invariant\n"
    "  admin     admin create: create a staff member (COFFER_ADMIN_PASSWORD)\n"
    "  keys      keys rotate: add a master key and re-wrap every data key under it\n"
    "  backup    backup --out DIR: consistent copies of the SQLite databases\n"
    "  reconcile reconcile FILE [--from DATE] [--to DATE]: compare a gateway's settlement\n"
    "            file (CSV) with the gateway operations; exit 1 on mismatches\n"
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
    "options (serve only):\n"
    "  --tls-cert FILE     serve HTTPS with this PEM certificate, chain after it\n"
    "                      (env COFFER_TLS_CERT)\n"
    "  --tls-key FILE      the certificate's PEM private key, mode 0600 (env COFFER_TLS_KEY)\n"
    "  --insecure-http     allow plain HTTP on an address that is not loopback, behind a\n"
    "                      proxy that does TLS (env COFFER_INSECURE_HTTP=1)\n\n"
    "Without TLS, serve refuses to listen on anything but loopback (127.0.0.0/8, ::1,\n"
    "localhost) unless --insecure-http is given. `coffer cert --help` makes a dev certificate.\n\n"
    "The operator token comes from COFFER_OPERATOR_TOKEN on first start, or is generated and\n"
    "written to DIR/operator.token (mode 0600). Only its SHA-256 is stored. It can do one\n"
    "thing: create the first admin (POST /v1/bootstrap). Everything else needs a session.\n\n"
    "Personal data is sealed with master keys from COFFER_MASTER_KEYS, or the file named by\n"
    "master_key_file (env COFFER_MASTER_KEY_FILE), else DIR/master.key, made on first start.\n";

static const char *const usage_cmd[][2] = {
    {"serve", "usage: coffer serve [--data DIR] [--db URL] [--listen HOST:PORT]\n"
              "                    [--config FILE] [--log-level LEVEL]\n"
              "                    [--tls-cert FILE --tls-key FILE | --insecure-http]\n"
              "Serves the API until SIGINT or SIGTERM, then drains queued writes and stops.\n"
              "With --tls-cert and --tls-key (both or neither) it serves HTTPS only (TLS 1.2\n"
              "and 1.3) and every answer carries Strict-Transport-Security. The key file must\n"
              "give group and others no access (chmod 600). Without TLS it refuses (exit 2) to\n"
              "listen on an address that is not loopback (127.0.0.0/8, ::1, localhost) unless\n"
              "--insecure-http is given, for a TLS-terminating proxy in front of it.\n"},
    {"init", "usage: coffer init [--data DIR] [--db URL] [--config FILE]\n"
             "Creates the database and the operator token if they do not exist.\n"},
    {"verify", "usage: coffer verify [--data DIR] [--db URL] [--config FILE]\n"
               "Recomputes the hash chain, re-sums every account from the journal and checks\n"
               "every invariant. Prints 'ok' with counts and exits 0, or prints each problem\n"
               "and exits 1. Safe on a stopped server's data directory (and on a running one:\n"
               "it reads one snapshot).\n"},
    /* the numbers are CERT_VALIDITY_DAYS and CERT_HOSTS_MAX (cli/cert.h) */
    {"cert", "usage: coffer cert --out DIR [--host NAME ...]\n"
             "Creates a self-signed development certificate: an EC P-256 key in DIR/key.pem\n"
             "(mode 0600) and a certificate in DIR/cert.pem, valid for 90 days, for localhost,\n"
             "127.0.0.1, ::1 and each --host (a DNS name or an IP address, at most 16; the first\n"
             "one is also the subject's CN). DIR is created when missing; existing files are\n"
             "never overwritten. Serve with\n"
             "  coffer serve --tls-cert DIR/cert.pem --tls-key DIR/key.pem\n"
             "and let clients trust DIR/cert.pem (curl --cacert DIR/cert.pem). For development\n"
             "only: in production use a certificate from a real CA.\n"},
    {"routes", "usage: coffer routes\nPrints METHOD PATH SCOPE IDEMPOTENT per route.\n"},
    {"reconcile",
     "usage: coffer reconcile FILE [--from DATE] [--to DATE] [--data DIR] [--db URL]\n"
     "Compares a gateway's settlement file (CSV with the header\n"
     "reference,op_id,type,amount_minor,currency,status) with the top-ups, withdrawals and\n"
     "payouts created from --from to --to (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC; a row\n"
     "may name one made a day around them; without them, the whole history). Prints one\n"
     "line per mismatch and a summary. Exits 0 when everything matches, 1 when there are\n"
     "mismatches, 2 on an error. Reads only; safe beside a running server.\n"},
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
    bool serve = strcmp(cmd, "serve") == 0;
    /* admin/keys take a verb first, and a few flags of their own (read by their commands) */
    bool verb = strcmp(cmd, "admin") == 0 || strcmp(cmd, "keys") == 0 ||
                strcmp(cmd, "reconcile") == 0; /* reconcile takes FILE first */
    static const char *const own_flags[] = {"--login", "--name", "--role",
                                            "--out",   "--from", "--to"};
    for (int i = verb ? 3 : 2; i < argc; i++) {
        const char *a = argv[i];
        bool own = false;
        for (size_t k = 0; k < sizeof(own_flags) / sizeof(own_flags[0]); k++)
            own = own || (!serve && strcmp(a, own_flags[k]) == 0);
        if (own && i + 1 < argc) {
            i++;
            continue;
        }
        const char *key = strcmp(a, "--data") == 0                ? "data"
                          : strcmp(a, "--db") == 0                ? "db"
                          : strcmp(a, "--listen") == 0            ? "listen"
                          : strcmp(a, "--log-level") == 0         ? "log_level"
                          : serve && strcmp(a, "--tls-cert") == 0 ? "tls_cert"
                          : serve && strcmp(a, "--tls-key") == 0  ? "tls_key"
                                                                  : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_print(cmd);
            return 1;
        }
        if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (serve && strcmp(a, "--insecure-http") == 0) {
            c->insecure_http = true;
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

/* The PEM texts serve hands to the HTTP server: NULL for plain HTTP. Each buffer holds
 * CERT_PEM_BYTES_MAX + 1 bytes; serve_tls_free wipes them before freeing. */
struct serve_tls {
    char *cert_pem;
    char *key_pem;
};

static void serve_tls_free(struct serve_tls *tls)
{
    if (tls->key_pem != NULL)
        hash_wipe(tls->key_pem, CERT_PEM_BYTES_MAX + 1);
    free(tls->key_pem);
    free(tls->cert_pem);
    tls->key_pem = NULL;
    tls->cert_pem = NULL;
}

/* True when the host of HOST:PORT is a loopback address: 127.0.0.0/8, ::1 (also as
 * ::ffff:127.x.y.z) or the name "localhost". Anything it cannot parse is not loopback. */
static bool listen_is_loopback(const char *listen)
{
    char host[sizeof(((struct config *)NULL)->listen)];
    const char *colon = strrchr(listen, ':');
    size_t len = colon != NULL ? (size_t)(colon - listen) : 0;
    if (len >= 2 && listen[0] == '[' && listen[len - 1] == ']') {
        listen++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(host))
        return false;
    memcpy(host, listen, len);
    host[len] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return strcasecmp(host, "localhost") == 0;
}

/* Opens a PEM file serve is to read: a regular file of at most CERT_PEM_BYTES_MAX bytes and,
 * when secret, without any permission for group or others. */
static enum cf_err pem_file_open(const char *path, bool secret, int *fd_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "coffer serve: cannot open %s: %s\n", path, strerror(errno));
        return CF_ERR_CONFIG;
    }
    struct stat st;
    bool ok = false;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        fprintf(stderr, "coffer serve: %s is not a regular file\n", path);
    else if (st.st_size > CERT_PEM_BYTES_MAX)
        fprintf(stderr, "coffer serve: %s is larger than %d bytes\n", path, CERT_PEM_BYTES_MAX);
    else if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
        fprintf(stderr,
                "coffer serve: refusing the private key %s: group or others have "
                "access to it (mode %04o); run chmod 600 %s\n",
                path, (unsigned)(st.st_mode & 07777), path);
    else
        ok = true;
    if (!ok) {
        close(fd);
        return CF_ERR_CONFIG;
    }
    *fd_out = fd;
    return CF_OK;
}

/* Reads a PEM file into a new NUL-terminated buffer of CERT_PEM_BYTES_MAX + 1 bytes (read(2)
 * straight into it, so no stdio buffer keeps a copy of a key). */
static enum cf_err pem_file_read(const char *path, bool secret, char **out)
{
    int fd = -1;
    enum cf_err err = pem_file_open(path, secret, &fd);
    if (err != CF_OK)
        return err;
    char *buf = malloc(CERT_PEM_BYTES_MAX + 1);
    size_t n = 0;
    ssize_t got = 1;
    while (buf != NULL && got > 0 && n <= CERT_PEM_BYTES_MAX) {
        got = read(fd, buf + n, CERT_PEM_BYTES_MAX + 1 - n);
        if (got > 0)
            n += (size_t)got;
        else if (got < 0 && errno == EINTR)
            got = 1;
    }
    close(fd);
    if (buf == NULL || got < 0 || n > CERT_PEM_BYTES_MAX) {
        fprintf(stderr, "coffer serve: cannot read %s (or it is larger than %d bytes)\n", path,
                CERT_PEM_BYTES_MAX);
        if (buf != NULL)
            hash_wipe(buf, CERT_PEM_BYTES_MAX + 1);
        free(buf);
        return CF_ERR_CONFIG;
    }
    CF_ASSERT(n <= CERT_PEM_BYTES_MAX);
    buf[n] = '\0';
    *out = buf;
    return CF_OK;
}

/* Plain HTTP: fine on loopback; elsewhere only with insecure_http, and then with a warning. */
static bool plain_http_allowed(const struct config *c)
{
    if (listen_is_loopback(c->listen))
        return true;
    if (!c->insecure_http) {
        fprintf(stderr,
                "coffer serve: refusing to serve plain HTTP on %s, which is not a loopback "
                "address.\nGive --tls-cert FILE and --tls-key FILE to serve HTTPS (`coffer cert` "
                "makes a development pair),\nor --insecure-http when a proxy in front of coffer "
                "does TLS and is its only client.\n",
                c->listen);
        return false;
    }
    cf_log(LOG_WARN,
           "serving plain HTTP on an address that is not loopback (--insecure-http): "
           "tokens and data cross the network unencrypted unless a proxy does TLS",
           "listen", c->listen, NULL);
    return true;
}

/* Decides between HTTPS and plain HTTP and reads the PEM files into tls (left NULL for plain
 * HTTP). Returns 0 to go on, or 2 after a message when serve must refuse to start. */
static int serve_tls_load(const struct config *c, struct serve_tls *tls)
{
    CF_ASSERT(tls->cert_pem == NULL && tls->key_pem == NULL);
    bool cert = c->tls_cert[0] != '\0', key = c->tls_key[0] != '\0';
    if (cert != key) {
        fprintf(stderr, "coffer serve: --tls-cert and --tls-key go together: give both to "
                        "serve HTTPS, or neither\n");
        return 2;
    }
    if (!cert)
        return plain_http_allowed(c) ? 0 : 2;
    enum cf_err err = pem_file_read(c->tls_key, true, &tls->key_pem);
    if (err == CF_OK)
        err = pem_file_read(c->tls_cert, false, &tls->cert_pem);
    if (err == CF_OK)
        err = cert_pair_check(tls->cert_pem, tls->key_pem, c->tls_cert, c->tls_key);
    if (err != CF_OK) {
        serve_tls_free(tls);
        return 2;
    }
    CF_ASSERT(tls->cert_pem != NULL && tls->key_pem != NULL);
    return 0;
}

static void serve_announce(const struct config *c, const struct http_server *srv,
                           const char *token_path, bool tls)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", http_server_port(srv));
    cf_log(LOG_INFO, "serving", "listen", c->listen, "port", port, "data", c->data, "scheme",
           tls ? "https" : "http", NULL);
    printf("coffer: serving on %s://%s\n", tls ? "https" : "http", c->listen);
    if (token_path[0] != '\0')
        printf("coffer: operator token in %s\n", token_path);
    else
        printf("coffer: operator token is the COFFER_OPERATOR_TOKEN given on first start\n");
    fflush(stdout);
}

static int cmd_serve(const struct config *c)
{
    struct serve_tls tls = {NULL, NULL};
    int rc = serve_tls_load(c, &tls);
    if (rc != 0)
        return rc;
    sigset_t set;
    signals_block(&set); /* before any thread starts, so all of them inherit the mask */
    struct store *store = NULL;
    struct writer *writer = NULL;
    struct api *api = NULL;
    struct http_server *srv = NULL;
    struct cli_identity ci;
    memset(&ci, 0, sizeof(ci));
    uint8_t token_hash[HASH_BYTES];
    char token_path[CONFIG_PATH_BYTES_MAX];
    enum cf_err err = store_open_cfg(c, false, &store);
    if (err == CF_OK)
        err = token_setup(store, c, token_hash, token_path, sizeof(token_path));
    if (err == CF_OK)
        err = cli_identity_open(c, true, &ci);
    if (err == CF_OK)
        err = writer_create(store, &cf_clock_real, &writer);
    if (err == CF_OK)
        err = api_create(store, writer, ci.identity, token_hash, &api);
    if (err == CF_OK)
        err = cli_payments_open(c, &ci, api);
    hash_wipe(token_hash, sizeof(token_hash));
    struct http_server_config hc = {.listen = c->listen,
                                    .tls_cert_pem = tls.cert_pem,
                                    .tls_key_pem = tls.key_pem,
                                    .threads = c->http_threads,
                                    .routes = api_routes,
                                    .routes_n = api_routes_n,
                                    .authorize = api_authorize,
                                    .problem = api_problem,
                                    .app = api,
                                    .country_header = c->client_country_header[0] != '\0'
                                                          ? c->client_country_header
                                                          : NULL};
    if (err == CF_OK)
        err = http_server_start(&hc, &srv);
    bool https = tls.cert_pem != NULL;
    serve_tls_free(&tls); /* the server has parsed them: the key leaves memory now */
    if (err == CF_OK) {
        api->server = srv;
        serve_announce(c, srv, token_path, https);
        int sig = 0;
        sigwait(&set, &sig);
        cf_log(LOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
        http_server_quiesce(srv);
        api_pool_destroy(api->pool); /* finishes queued identity work; it may still write */
        api->pool = NULL;
        cli_payments_close(api); /* the gateway's callbacks stop before the writer does */
        writer_stop(writer);     /* drains the queue: every suspended request is resumed */
        usleep(200 * 1000);      /* lets resumed connections send their answers */
        http_server_stop(srv);
    }
    cli_payments_close(api); /* its threads (callbacks, scheduler) use the writer: first */
    writer_destroy(writer);
    api_destroy(api);
    cli_identity_close(&ci);
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
    struct cli_identity ci;
    enum cf_err err = store_open_cfg(c, false, &store);
    if (err == CF_OK)
        err = token_setup(store, c, token_hash, token_path, sizeof(token_path));
    if (err == CF_OK && (err = cli_identity_open(c, true, &ci)) == CF_OK)
        cli_identity_close(&ci);
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
    return cli_audit_verify(c);
}

/* coffer cert --out DIR [--host NAME ...] */
static int cmd_cert(int argc, char **argv)
{
    const char *dir = NULL;
    const char *hosts[CERT_HOSTS_MAX];
    size_t hosts_n = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_print("cert");
            return 0;
        } else if (strcmp(a, "--out") == 0 && has_value) {
            dir = argv[++i];
        } else if (strcmp(a, "--host") == 0 && has_value && hosts_n < CERT_HOSTS_MAX) {
            hosts[hosts_n++] = argv[++i];
        } else if (strcmp(a, "--host") == 0 && has_value) {
            fprintf(stderr, "coffer cert: at most %d --host names\n", CERT_HOSTS_MAX);
            return 2;
        } else {
            fprintf(stderr, "coffer cert: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (dir == NULL || dir[0] == '\0') {
        fprintf(stderr, "coffer cert: --out DIR is required (see --help)\n");
        return 2;
    }
    enum cf_err err = cert_create(dir, hosts, hosts_n);
    if (err != CF_OK)
        return err == CF_ERR_CONFIG ? 2 : 1;
    printf("coffer: private key written to %s/%s (mode 0600)\n", dir, CERT_KEY_FILE);
    printf("coffer: certificate written to %s/%s (valid %d days)\n", dir, CERT_CERT_FILE,
           CERT_VALIDITY_DAYS);
    printf("coffer: serve with --tls-cert %s/%s --tls-key %s/%s\n", dir, CERT_CERT_FILE, dir,
           CERT_KEY_FILE);
    return 0;
}

/* The roles a route admits, as "admin,auditor" ("public" for none, "operator" for the
 * bootstrap token). */
static void roles_text(uint32_t roles, char *out, size_t out_bytes)
{
    static const char *const names[] = {"customer", "merchant", "support", "risk",
                                        "admin",    "auditor",  "operator"};
    size_t n = 0;
    out[0] = '\0';
    for (size_t b = 0; b < sizeof(names) / sizeof(names[0]); b++) {
        if ((roles & (1u << b)) != 0)
            n += (size_t)snprintf(out + n, out_bytes - n, "%s%s", n > 0 ? "," : "", names[b]);
        CF_ASSERT(n < out_bytes);
    }
    if (roles == HTTP_PUBLIC)
        snprintf(out, out_bytes, "public");
}

static int cmd_routes(void)
{
    for (size_t i = 0; i < api_routes_n; i++) {
        const struct http_route *r = &api_routes[i];
        char roles[128];
        roles_text(r->roles, roles, sizeof(roles));
        printf("%s %s %s %s\n", http_method_name(r->method), r->pattern, roles,
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
    if (strcmp(cmd, "cert") == 0)
        return cmd_cert(argc, argv);
    static const char *const with_config[] = {"serve", "init",   "verify",   "admin",
                                              "keys",  "backup", "reconcile"};
    bool known = false;
    for (size_t i = 0; i < sizeof(with_config) / sizeof(with_config[0]); i++)
        known = known || strcmp(cmd, with_config[i]) == 0;
    if (!known) {
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
    if (strcmp(cmd, "admin") == 0)
        return cli_cmd_admin(&c, argc, argv);
    if (strcmp(cmd, "keys") == 0)
        return cli_cmd_keys(&c, argc, argv);
    if (strcmp(cmd, "backup") == 0)
        return cli_cmd_backup(&c, argc, argv);
    if (strcmp(cmd, "reconcile") == 0)
        return cli_cmd_reconcile(&c, argc, argv);
    return cmd_verify(&c);
}
