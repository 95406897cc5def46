/* config.c - defaults, config file and environment; see config.h. */
#include "cli/config.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/assert.h"
#include "risk/lists.h"

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data, sizeof(c->data), "./var");
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:8080");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->http_threads = 2;
    c->readers = 4;
    snprintf(c->assets, sizeof(c->assets), "POINTS:0");
    c->session_idle_s = 900;
    c->session_absolute_s = 12 * 3600;
    c->step_up_amount_minor = 100000;
    snprintf(c->currencies, sizeof(c->currencies), "USD");
    c->refund_returns_fee = true;
    c->monitoring = true;
    c->kyc_enforce = true;
    c->screening_threshold = SCREEN_THRESHOLD_DEFAULT;
    c->quote_ttl_s = 60;
    c->qr_ttl_s = 900;
    c->fx_spread_bps = 50;
    c->topup_hold_s = 1800;
    snprintf(c->gateway, sizeof(c->gateway), "sandbox");
    c->sandbox_latency_ms = 200;
    c->payout_period_s = 86400;
    risk_kyc_config_defaults(&c->kyc);
    risk_cases_sweep_config_default(&c->cases);
}

static enum cf_err copy_str(char *dst, size_t dst_bytes, const char *key, const char *value)
{
    if (strlen(value) >= dst_bytes || value[0] == '\0') {
        fprintf(stderr, "coffer: %s: value is empty or too long\n", key);
        return CF_ERR_CONFIG;
    }
    memcpy(dst, value, strlen(value) + 1);
    return CF_OK;
}

static enum cf_err parse_uint(const char *key, const char *value, unsigned lo, unsigned hi,
                              unsigned *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "coffer: %s: expected a number from %u to %u\n", key, lo, hi);
        return CF_ERR_CONFIG;
    }
    *out = (unsigned)v;
    return CF_OK;
}

static enum cf_err parse_bool(const char *key, const char *value, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes"}, *const no[] = {"0", "false", "no"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
            *out = strcasecmp(value, yes[i]) == 0;
            return CF_OK;
        }
    }
    fprintf(stderr, "coffer: %s: expected 1 or 0 (true/false, yes/no)\n", key);
    return CF_ERR_CONFIG;
}

static enum cf_err config_set_payments(struct config *c, const char *key, const char *value);

enum cf_err config_set(struct config *c, const char *key, const char *value)
{
    CF_ASSERT(key != NULL && value != NULL);
    if (strcmp(key, "data") == 0)
        return copy_str(c->data, sizeof(c->data), key, value);
    if (strcmp(key, "listen") == 0)
        return copy_str(c->listen, sizeof(c->listen), key, value);
    if (strcmp(key, "log_level") == 0)
        return copy_str(c->log_level, sizeof(c->log_level), key, value);
    if (strcmp(key, "http_threads") == 0)
        return parse_uint(key, value, 1, HTTP_THREADS_MAX, &c->http_threads);
    if (strcmp(key, "readers") == 0)
        return parse_uint(key, value, 1, STORE_READERS_MAX, &c->readers);
    if (strcmp(key, "assets") == 0) {
        if (strlen(value) >= sizeof(c->assets))
            return CF_ERR_CONFIG;
        memcpy(c->assets, value, strlen(value) + 1);
        return CF_OK;
    }
    if (strcmp(key, "db") == 0)
        return copy_str(c->db, sizeof(c->db), key, value);
    if (strcmp(key, "tls_cert") == 0)
        return copy_str(c->tls_cert, sizeof(c->tls_cert), key, value);
    if (strcmp(key, "tls_key") == 0)
        return copy_str(c->tls_key, sizeof(c->tls_key), key, value);
    if (strcmp(key, "insecure_http") == 0)
        return parse_bool(key, value, &c->insecure_http);
    if (strcmp(key, "master_key_file") == 0)
        return copy_str(c->master_key_file, sizeof(c->master_key_file), key, value);
    if (strcmp(key, "notifier_url") == 0)
        return copy_str(c->notifier_url, sizeof(c->notifier_url), key, value);
    if (strcmp(key, "session_idle_s") == 0)
        return parse_uint(key, value, 60, 86400, &c->session_idle_s);
    if (strcmp(key, "session_absolute_s") == 0)
        return parse_uint(key, value, 300, 30 * 86400, &c->session_absolute_s);
    if (strcmp(key, "step_up_amount_minor") == 0)
        return parse_uint(key, value, 0, 4000000000u, &c->step_up_amount_minor);
    return config_set_payments(c, key, value);
}

/* The payment settings (config.h), after the others. */
static enum cf_err config_set_payments(struct config *c, const char *key, const char *value)
{
    static const struct {
        const char *key;
        size_t offset;
        unsigned lo, hi;
    } nums[] = {
        {"send_fee_bps", offsetof(struct config, send_fee_bps), 0, 10000},
        {"send_fee_fixed_minor", offsetof(struct config, send_fee_fixed_minor), 0, 100000000},
        {"quote_ttl_s", offsetof(struct config, quote_ttl_s), 10, 3600},
        {"qr_ttl_s", offsetof(struct config, qr_ttl_s), 30, 7 * 86400},
        {"fx_spread_bps", offsetof(struct config, fx_spread_bps), 0, 5000},
        {"topup_hold_s", offsetof(struct config, topup_hold_s), 60, 7 * 86400},
        {"sandbox_latency_ms", offsetof(struct config, sandbox_latency_ms), 0, 60000},
        {"payout_period_s", offsetof(struct config, payout_period_s), 1, 31 * 86400},
        {"screening_threshold", offsetof(struct config, screening_threshold),
         RISK_LISTS_THRESHOLD_MIN, SCREEN_SCORE_MAX},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (strcmp(key, nums[i].key) == 0)
            return parse_uint(key, value, nums[i].lo, nums[i].hi,
                              (unsigned *)((char *)c + nums[i].offset));
    }
    if (strcmp(key, "currencies") == 0)
        return copy_str(c->currencies, sizeof(c->currencies), key, value);
    if (strcmp(key, "default_currency") == 0)
        return copy_str(c->default_currency, sizeof(c->default_currency), key, value);
    if (strcmp(key, "refund_returns_fee") == 0)
        return parse_bool(key, value, &c->refund_returns_fee);
    if (strcmp(key, "freeze_blocks_incoming") == 0)
        return parse_bool(key, value, &c->freeze_blocks_incoming);
    if (strcmp(key, "client_country_header") == 0) {
        for (const char *p = value; *p != '\0'; p++)
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= '0' && *p <= '9') || *p == '-'))
                return CF_ERR_CONFIG; /* a header name: letters, digits, dashes */
        return copy_str(c->client_country_header, sizeof(c->client_country_header), key, value);
    }
    if (strcmp(key, "kyc_enforce") == 0)
        return parse_bool(key, value, &c->kyc_enforce);
    if (strcmp(key, "monitoring") == 0) { /* on or off (or a boolean) */
        if (strcasecmp(value, "on") == 0 || strcasecmp(value, "off") == 0) {
            c->monitoring = strcasecmp(value, "on") == 0;
            return CF_OK;
        }
        return parse_bool(key, value, &c->monitoring);
    }
    if (strcmp(key, "kyc_limits") == 0 || strcmp(key, "kyc_features") == 0) {
        char why[160] = "";
        enum cf_err err = risk_kyc_config_set(&c->kyc, key, value, why, sizeof(why));
        if (err != CF_OK)
            fprintf(stderr, "coffer: %s: %s\n", key, why);
        return err;
    }
    if (strcmp(key, "gateway") == 0) {
        if (strcmp(value, "sandbox") != 0 && strcmp(value, "http") != 0) {
            fprintf(stderr, "coffer: gateway: expected sandbox or http\n");
            return CF_ERR_CONFIG;
        }
        return copy_str(c->gateway, sizeof(c->gateway), key, value);
    }
    if (strcmp(key, "gateway_url") == 0)
        return copy_str(c->gateway_url, sizeof(c->gateway_url), key, value);
    const char *why = NULL; /* the AML sweep's settings (risk/cases.h) */
    enum cf_err err = risk_cases_sweep_config_set(&c->cases, key, value, &why);
    if (err != CF_ERR_NOT_FOUND) {
        if (err != CF_OK)
            fprintf(stderr, "coffer: %s\n", why);
        return err;
    }
    fprintf(stderr, "coffer: unknown setting '%s'\n", key);
    return CF_ERR_CONFIG;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

enum cf_err config_load_file(struct config *c)
{
    if (c->config_path[0] == '\0')
        return CF_OK;
    FILE *f = fopen(c->config_path, "r");
    if (f == NULL) {
        fprintf(stderr, "coffer: cannot read config file %s: %s\n", c->config_path,
                strerror(errno));
        return CF_ERR_CONFIG;
    }
    char line[CONFIG_LINE_BYTES_MAX];
    int lineno = 0;
    enum cf_err err = CF_OK;
    while (err == CF_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fprintf(stderr, "coffer: %s:%d: expected key = value\n", c->config_path, lineno);
            err = CF_ERR_CONFIG;
            break;
        }
        *eq = '\0';
        err = config_set(c, trim(s), trim(eq + 1));
    }
    fclose(f);
    return err;
}

enum cf_err config_load_env(struct config *c)
{
    static const char *const map[][2] = {
        {"COFFER_DATA", "data"},
        {"COFFER_LISTEN", "listen"},
        {"COFFER_LOG_LEVEL", "log_level"},
        {"COFFER_HTTP_THREADS", "http_threads"},
        {"COFFER_READERS", "readers"},
        {"COFFER_ASSETS", "assets"},
        {"COFFER_DB", "db"},
        {"COFFER_TLS_CERT", "tls_cert"},
        {"COFFER_TLS_KEY", "tls_key"},
        {"COFFER_INSECURE_HTTP", "insecure_http"},
        {"COFFER_MASTER_KEY_FILE", "master_key_file"},
        {"COFFER_NOTIFIER_URL", "notifier_url"},
        {"COFFER_SESSION_IDLE_S", "session_idle_s"},
        {"COFFER_SESSION_ABSOLUTE_S", "session_absolute_s"},
        {"COFFER_STEP_UP_AMOUNT_MINOR", "step_up_amount_minor"},
        {"COFFER_CURRENCIES", "currencies"},
        {"COFFER_DEFAULT_CURRENCY", "default_currency"},
        {"COFFER_SEND_FEE_BPS", "send_fee_bps"},
        {"COFFER_SEND_FEE_FIXED_MINOR", "send_fee_fixed_minor"},
        {"COFFER_REFUND_RETURNS_FEE", "refund_returns_fee"},
        {"COFFER_QUOTE_TTL_S", "quote_ttl_s"},
        {"COFFER_QR_TTL_S", "qr_ttl_s"},
        {"COFFER_FX_SPREAD_BPS", "fx_spread_bps"},
        {"COFFER_TOPUP_HOLD_S", "topup_hold_s"},
        {"COFFER_GATEWAY", "gateway"},
        {"COFFER_GATEWAY_URL", "gateway_url"},
        {"COFFER_SANDBOX_LATENCY_MS", "sandbox_latency_ms"},
        {"COFFER_PAYOUT_PERIOD_S", "payout_period_s"},
        {"COFFER_FREEZE_BLOCKS_INCOMING", "freeze_blocks_incoming"},
        {"COFFER_MONITORING", "monitoring"},
        {"COFFER_KYC_ENFORCE", "kyc_enforce"},
        {"COFFER_CLIENT_COUNTRY_HEADER", "client_country_header"},
        {"COFFER_SCREENING_THRESHOLD", "screening_threshold"},
        {"COFFER_KYC_LIMITS", "kyc_limits"},
        {"COFFER_KYC_FEATURES", "kyc_features"},
        {"COFFER_AML_SCENARIOS", "aml_scenarios"},
        {"COFFER_AML_CURRENCIES", "aml_currencies"},
        {"COFFER_AML_STRUCTURING_BAND_BPS", "aml_structuring_band_bps"},
        {"COFFER_AML_STRUCTURING_COUNT_MIN", "aml_structuring_count_min"},
        {"COFFER_AML_STRUCTURING_WINDOW_S", "aml_structuring_window_s"},
        {"COFFER_AML_PASS_THROUGH_OUT_BPS", "aml_pass_through_out_bps"},
        {"COFFER_AML_PASS_THROUGH_WINDOW_S", "aml_pass_through_window_s"},
        {"COFFER_AML_DORMANT_S", "aml_dormant_s"},
        {"COFFER_AML_DORMANT_WAKE_WINDOW_S", "aml_dormant_wake_window_s"},
        {"COFFER_AML_FAN_IN_COUNT_MIN", "aml_fan_in_count_min"},
        {"COFFER_AML_FAN_IN_WINDOW_S", "aml_fan_in_window_s"},
        {"COFFER_AML_FAN_OUT_COUNT_MIN", "aml_fan_out_count_min"},
        {"COFFER_AML_FAN_OUT_WINDOW_S", "aml_fan_out_window_s"},
        {"COFFER_AML_SWEEP_PERIOD_S", "aml_sweep_period_s"},
        {"COFFER_OPERATOR_NAME", "operator_name"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        const char *v = getenv(map[i][0]);
        if (v != NULL && config_set(c, map[i][1], v) != CF_OK)
            return CF_ERR_CONFIG;
    }
    return CF_OK;
}
