/*
 * config.h - Coffer's settings and where they come from.
 *
 * Precedence, highest first: command-line flags, COFFER_* environment variables, the config
 * file (--config FILE or COFFER_CONFIG; `key = value` lines, # comments), built-in defaults:
 *
 *   key           env                  default          meaning
 *   data          COFFER_DATA          ./var            data directory (database, token, lock)
 *   listen        COFFER_LISTEN        127.0.0.1:8080   HOST:PORT to serve on
 *   log_level     COFFER_LOG_LEVEL     info             debug, info, warn, error
 *   http_threads  COFFER_HTTP_THREADS  2                HTTP event-loop threads (1..64)
 *   readers       COFFER_READERS       4                read connections (1..16)
 *   assets        COFFER_ASSETS        POINTS:0         operator assets, CODE:SCALE,...
 *   db            COFFER_DB            (data dir)       storage location; postgresql:// later
 *   tls_cert      COFFER_TLS_CERT      (none)           PEM file: certificate, then chain
 *   tls_key       COFFER_TLS_KEY       (none)           PEM file: its private key (mode 0600)
 *   insecure_http COFFER_INSECURE_HTTP 0                1: plain HTTP on a non-loopback address
 *   master_key_file COFFER_MASTER_KEY_FILE DATA/master.key  master keys, "ID:BASE64" lines
 *   notifier_url  COFFER_NOTIFIER_URL  (none)           SMS/email provider; none = dev outbox
 *   session_idle_s COFFER_SESSION_IDLE_S 900            session idle timeout (60..86400)
 *   session_absolute_s COFFER_SESSION_ABSOLUTE_S 43200  session lifetime (300..2592000)
 *   step_up_amount_minor COFFER_STEP_UP_AMOUNT_MINOR 100000  transfers above need step-up
 *   currencies    COFFER_CURRENCIES    USD              currencies on offer to customers, A,B,...
 *   default_currency COFFER_DEFAULT_CURRENCY (first)    the wallet's default currency
 *   send_fee_bps  COFFER_SEND_FEE_BPS  0                fee on sends to people, basis points
 *   send_fee_fixed_minor COFFER_SEND_FEE_FIXED_MINOR 0  and its fixed part
 *   refund_returns_fee COFFER_REFUND_RETURNS_FEE 1      refunds give the merchant its fee share
 *   quote_ttl_s   COFFER_QUOTE_TTL_S   60               how long a quote holds (10..3600)
 *   qr_ttl_s      COFFER_QR_TTL_S      900              default life of a dynamic QR code
 *   fx_spread_bps COFFER_FX_SPREAD_BPS 50               spread on conversions (0..5000)
 *   topup_hold_s  COFFER_TOPUP_HOLD_S  1800             a top-up's wait for the gateway
 *   gateway       COFFER_GATEWAY       sandbox          sandbox (built in) or http
 *   gateway_url   COFFER_GATEWAY_URL   (none)           the http gateway's base URL
 *   sandbox_latency_ms COFFER_SANDBOX_LATENCY_MS 200    the sandbox's answer and callback delay
 *   payout_period_s COFFER_PAYOUT_PERIOD_S 86400        scheduled merchant payouts: once per
 *                                                       period from 00:00 UTC (1..2678400)
 *   freeze_blocks_incoming COFFER_FREEZE_BLOCKS_INCOMING 0  a freeze also refuses payments to
 *                                                       the party when the request does not
 *                                                       say (api/risk_freeze.h)
 *   monitoring COFFER_MONITORING on                    score every money movement against the
 *                                                       risk rules before it commits (on|off;
 *                                                       api/risk_monitor.h, api/risk_rules.h)
 *   client_country_header COFFER_CLIENT_COUNTRY_HEADER (none)  the header a trusted proxy sets
 *                                                       to the client's country (ISO 3166
 *                                                       alpha-2): monitoring's ip_country
 *   kyc_enforce   COFFER_KYC_ENFORCE   1                apply the KYC tier limits and features
 *                                                       to customers' money movements
 *   kyc_limits    COFFER_KYC_LIMITS    (see below)      per-tier limits: "tier<N> <CUR|*>
 *                                                       field=amount ...", several lines, or
 *                                                       clauses separated by ';' (risk/kyc.h)
 *   kyc_features  COFFER_KYC_FEATURES  (see below)      what a tier opens: "tier<N> a,b,c"
 *                                                       (docs/RISK.md has both, defaults)
 *   aml_*         COFFER_AML_*         (risk/cases.h)   the AML sweep's scenarios, per-currency
 *                                                       thresholds, windows and period:
 *                                                       aml_scenarios, aml_currencies,
 *                                                       aml_structuring_{band_bps,count_min,
 *                                                       window_s}, aml_pass_through_{out_bps,
 *                                                       window_s}, aml_dormant_s,
 *                                                       aml_dormant_wake_window_s,
 *                                                       aml_fan_{in,out}_{count_min,window_s},
 *                                                       aml_sweep_period_s (60; 0 = on demand)
 *   operator_name COFFER_OPERATOR_NAME (none)           the reporting entity of a suspicious-
 *                                                       activity report (docs/RISK.md)
 *   screening_threshold COFFER_SCREENING_THRESHOLD 850  the sanctions screening's hit score
 *                                                       (500..1000; risk/screen.h has its
 *                                                       precision and recall per value)
 *
 * Master keys: COFFER_MASTER_KEYS (the key file's text itself) wins over the file; without
 * either, serve/init create DATA/master.key on first start. Keep the key file off the machine
 * that holds the database's backups. COFFER_NOTIFIER_SECRET (environment only) signs the
 * provider's requests. COFFER_GATEWAY_SECRET (environment only; else DATA/gateway.key, made
 * on first start) signs gateway requests and checks their callbacks.
 *
 * serve speaks HTTPS when tls_cert and tls_key are both set (one alone is an error). Without
 * them it refuses to listen on anything but a loopback address unless insecure_http is set
 * (for a TLS proxy in front of it). Booleans take 1/0, true/false or yes/no.
 *
 * COFFER_OPERATOR_TOKEN is read only by `serve`/`init` on first start (see cli.c), never from
 * the config file, so the token is not written into a file an operator may share.
 */
#ifndef COFFER_CLI_CONFIG_H
#define COFFER_CLI_CONFIG_H

#include <stdbool.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"
#include "risk/cases.h"
#include "risk/kyc.h"

struct config {
    char data[CONFIG_PATH_BYTES_MAX];
    char listen[256];
    char log_level[16];
    unsigned http_threads;
    unsigned readers;
    char assets[512];
    char db[CONFIG_PATH_BYTES_MAX];
    char tls_cert[CONFIG_PATH_BYTES_MAX]; /* "" = none */
    char client_country_header[64];       /* a trusted proxy's country header; "" = none */
    char tls_key[CONFIG_PATH_BYTES_MAX];  /* "" = none */
    bool insecure_http;
    char master_key_file[CONFIG_PATH_BYTES_MAX]; /* "" = DATA/master.key */
    char notifier_url[CONFIG_PATH_BYTES_MAX];    /* "" = the development outbox */
    unsigned session_idle_s;
    unsigned session_absolute_s;
    unsigned step_up_amount_minor;
    char currencies[128];
    char default_currency[16]; /* "" = the first of currencies */
    unsigned send_fee_bps;
    unsigned send_fee_fixed_minor;
    bool refund_returns_fee;
    unsigned quote_ttl_s;
    unsigned qr_ttl_s;
    unsigned fx_spread_bps;
    unsigned topup_hold_s;
    char gateway[16];
    char gateway_url[CONFIG_PATH_BYTES_MAX];
    unsigned sandbox_latency_ms;
    unsigned payout_period_s;
    bool freeze_blocks_incoming;
    bool monitoring; /* score money movements (risk rules); default on */
    bool kyc_enforce; /* apply the KYC tier limits (api/risk_monitor.h); default on */
    unsigned screening_threshold; /* sanctions screening's hit score (api/risk_screening.h) */
    struct risk_kyc_config kyc; /* KYC tier limits and features (kyc_limits, kyc_features) */
    struct risk_cases_sweep_config cases; /* the AML sweep (aml_*, operator_name) */
    char config_path[CONFIG_PATH_BYTES_MAX];
};

void config_defaults(struct config *c);

/* Applies one key/value; CF_ERR_CONFIG with a message on stderr when invalid. */
CF_WARN_UNUSED enum cf_err config_set(struct config *c, const char *key, const char *value);

/* Reads the config file named by c->config_path (no-op when empty). */
CF_WARN_UNUSED enum cf_err config_load_file(struct config *c);

/* Applies COFFER_* variables. */
CF_WARN_UNUSED enum cf_err config_load_env(struct config *c);

#endif
