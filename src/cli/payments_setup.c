/*
 * payments_setup.c - wiring money movement into `serve`: the payments tables (in the identity
 * database), the payment settings, and the recovery of operations a crash left half done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/pay.h"
#include "api/pay_statements.h"
#include "api/risk_cases.h"
#include "api/risk_monitor.h"
#include "api/risk_rules.h"
#include "api/risk_screening.h"
#include "cli/setup.h"
#include "core/hash.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "money/currency.h"
#include "risk/freeze.h"
#include "risk/kyc.h"

#define GATEWAY_KEY_FILE_NAME "gateway.key"
#define GATEWAY_KEY_BYTES 32
#define SANDBOX_TIMEOUT_MS 3000 /* how long the sandbox's "timeout" card hangs */

static const struct vault *keys_of(void *ctx, uint32_t key_id)
{
    return identity_keys(ctx, key_id);
}

/* "USD,EUR" into the API's list; every code must be known and listed once. */
static enum cf_err currencies_parse(const char *text, struct api_pay_config *p)
{
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", text);
    p->currencies_n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && tok[n - 1] == ' ')
            tok[--n] = '\0';
        if (currency_find(tok, n) == NULL || p->currencies_n == API_CURRENCIES_MAX) {
            fprintf(stderr, "coffer: currencies: '%s' is unknown or one too many\n", tok);
            return CF_ERR_CONFIG;
        }
        for (size_t i = 0; i < p->currencies_n; i++) {
            if (strcmp(p->currencies[i], tok) == 0) {
                fprintf(stderr, "coffer: currencies: '%s' is listed twice\n", tok);
                return CF_ERR_CONFIG;
            }
        }
        snprintf(p->currencies[p->currencies_n++], sizeof(p->currencies[0]), "%s", tok);
    }
    if (p->currencies_n == 0) {
        fprintf(stderr, "coffer: currencies: none given\n");
        return CF_ERR_CONFIG;
    }
    return CF_OK;
}

static enum cf_err pay_config(const struct config *c, struct api_pay_config *p)
{
    api_pay_config_defaults(p);
    enum cf_err err = currencies_parse(c->currencies, p);
    if (err != CF_OK)
        return err;
    const char *def = c->default_currency[0] != '\0' ? c->default_currency : p->currencies[0];
    bool offered = false;
    for (size_t i = 0; i < p->currencies_n; i++)
        offered = offered || strcmp(p->currencies[i], def) == 0;
    if (!offered) {
        fprintf(stderr, "coffer: default_currency: '%s' is not among currencies\n", def);
        return CF_ERR_CONFIG;
    }
    snprintf(p->default_currency, sizeof(p->default_currency), "%.*s",
             (int)sizeof(p->default_currency) - 1, def);
    p->send_fee_bps = c->send_fee_bps;
    p->send_fee_fixed_minor = c->send_fee_fixed_minor;
    p->refund_returns_fee = c->refund_returns_fee;
    p->quote_ttl_s = c->quote_ttl_s;
    p->qr_ttl_s = c->qr_ttl_s;
    p->fx_spread_bps = c->fx_spread_bps;
    p->topup_hold_s = c->topup_hold_s;
    return CF_OK;
}

/* The gateway's shared secret: COFFER_GATEWAY_SECRET (at least 16 bytes of text), else
 * DATA/gateway.key (64 hex digits, made on first start, mode 0600). */
static enum cf_err gateway_secret(const struct config *c, struct api *api)
{
    const char *env = getenv("COFFER_GATEWAY_SECRET");
    if (env != NULL) {
        size_t n = strlen(env);
        if (n < GATEWAY_SECRET_BYTES_MIN || n > sizeof(api->gateway_secret)) {
            fprintf(stderr, "coffer: COFFER_GATEWAY_SECRET: 16 to 64 bytes\n");
            return CF_ERR_CONFIG;
        }
        memcpy(api->gateway_secret, env, n);
        api->gateway_secret_len = n;
        return CF_OK;
    }
    char path[CONFIG_PATH_BYTES_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", c->data, GATEWAY_KEY_FILE_NAME);
    char hex[GATEWAY_KEY_BYTES * 2 + 2] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        uint8_t key[GATEWAY_KEY_BYTES];
        hash_random(key, sizeof(key));
        hash_hex(key, sizeof(key), hex);
        hash_wipe(key, sizeof(key));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        bool ok = fd >= 0 && write(fd, hex, GATEWAY_KEY_BYTES * 2) == GATEWAY_KEY_BYTES * 2 &&
                  fsync(fd) == 0;
        if (fd >= 0)
            close(fd);
        fd = ok ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    }
    ssize_t n = fd >= 0 ? read(fd, hex, sizeof(hex) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n != GATEWAY_KEY_BYTES * 2) {
        fprintf(stderr, "coffer: cannot read or create %s\n", path);
        return CF_ERR_CONFIG;
    }
    memcpy(api->gateway_secret, hex, (size_t)n); /* the hex text itself is the secret */
    api->gateway_secret_len = (size_t)n;
    hash_wipe(hex, sizeof(hex));
    return CF_OK;
}

static enum cf_err gateway_open(const struct config *c, struct api *api)
{
    enum cf_err err = gateway_secret(c, api);
    if (err != CF_OK)
        return err;
    if (strcmp(c->gateway, "http") == 0) {
        struct gateway_http_config h = {.base_url = c->gateway_url,
                                        .secret = api->gateway_secret,
                                        .secret_len = api->gateway_secret_len,
                                        .timeout_ms = 10000};
        if (c->gateway_url[0] == '\0') {
            fprintf(stderr, "coffer: gateway = http needs gateway_url\n");
            return CF_ERR_CONFIG;
        }
        return gateway_http_create(&h, &api->gateway);
    }
    struct gateway_sandbox_config s = {.latency_ms = c->sandbox_latency_ms,
                                       .timeout_ms = SANDBOX_TIMEOUT_MS,
                                       .secret = api->gateway_secret,
                                       .secret_len = api->gateway_secret_len,
                                       .clock = NULL};
    return gateway_sandbox_create(&s, api_gateway_sink, api, &api->gateway);
}

/* The KYC store, once the configured limits name only known currencies. */
static enum cf_err kyc_open(const struct config *c, struct cli_identity *ci, struct api *api)
{
    char why[160] = "";
    if (risk_kyc_config_check(&c->kyc, why, sizeof(why)) != CF_OK) {
        fprintf(stderr, "coffer: kyc_limits: %s\n", why);
        return CF_ERR_CONFIG;
    }
    return risk_kyc_open(ci->db, keys_of, ci->identity, &c->kyc, &api->kyc);
}

enum cf_err cli_payments_open(const struct config *c, struct cli_identity *ci, struct api *api)
{
    enum cf_err err = pay_config(c, &api->pay);
    if (err == CF_OK)
        err = payments_open(ci->db, keys_of, ci->identity, &api->payments);
    if (err == CF_OK) /* account freezes: the same database and master keys */
        err = risk_freeze_open(ci->db, keys_of, ci->identity, &api->freeze);
    api->freeze_blocks_incoming = c->freeze_blocks_incoming;
    if (err == CF_OK) /* risk cases: the same database and master keys */
        err = risk_cases_open(ci->db, keys_of, ci->identity, &api->cases);
    if (err == CF_OK) /* the AML sweep that opens cases: its settings checked now, its timer's
                       * first run one period later */
        err = api_risk_aml_start(api, &c->cases);
    if (err == CF_OK) /* KYC tiers: the same database and master keys; limits from the config */
        err = kyc_open(c, ci, api);
    if (err == CF_OK) /* sanctions screening's lists, screenings and blocks: the same database */
        err = risk_lists_open(ci->db, keys_of, ci->identity, &api->risk_lists);
    if (err == CF_OK) /* the lists in memory and the re-screening thread (it reads identity, KYC
                       * and payments, and writes cases) */
        err = api_risk_screening_start(api, (int)c->screening_threshold);
    if (err == CF_OK) /* monitoring rules and the decision log: the same database and keys */
        err = risk_rules_store_open(ci->db, &api->risk_rules);
    if (err == CF_OK)
        err = risk_decisions_open(ci->db, keys_of, ci->identity, &api->risk_decisions);
    if (err == CF_OK) /* the active rules set, loaded before any payment is scored */
        err = api_risk_rules_start(api);
    api->risk_monitoring = c->monitoring;
    api->kyc_enforce = c->kyc_enforce;
    if (err == CF_OK)
        err = gateway_open(c, api);
    if (err == CF_OK) /* monitoring's velocity counters, in memory */
        err = api_risk_monitor_open(api, API_RISK_VELOCITY_KEYS_DEFAULT);
    if (err != CF_OK)
        return err;
    struct arena *arena = arena_create(4 * 1024 * 1024);
    if (arena == NULL)
        return CF_ERR_NOMEM;
    size_t n = 0;
    err = api_pay_recover(api, arena, &n);
    arena_destroy(arena);
    if (n > 0) {
        char text[24];
        snprintf(text, sizeof(text), "%zu", n);
        cf_log(LOG_INFO, "payments recovered", "operations", text, NULL);
    }
    if (err == CF_OK)
        err = api_payouts_schedule_start(api, c->payout_period_s);
    return err;
}

void cli_payments_close(struct api *api)
{
    if (api == NULL)
        return;
    api_risk_screening_stop(api);   /* it reads identity, KYC and payments, and writes cases */
    api_risk_aml_stop(api);         /* it reads payments and writes cases */
    api_payouts_schedule_stop(api); /* it pays through the gateway and the writer */
    gateway_destroy(api->gateway);  /* joins the sandbox's callback thread first */
    api->gateway = NULL;
    payments_close(api->payments);
    api->payments = NULL;
    risk_freeze_close(api->freeze);
    api->freeze = NULL;
    risk_cases_close(api->cases);
    api->cases = NULL;
    risk_kyc_close(api->kyc);
    api->kyc = NULL;
    risk_lists_close(api->risk_lists);
    api->risk_lists = NULL;
    api_risk_monitor_close(api);
    api_risk_rules_stop(api); /* after everything that scores (the payouts) stopped */
    risk_decisions_close(api->risk_decisions);
    api->risk_decisions = NULL;
    risk_rules_store_close(api->risk_rules);
    api->risk_rules = NULL;
    hash_wipe(api->gateway_secret, sizeof(api->gateway_secret));
}
