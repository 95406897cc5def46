/*
 * payments_setup.c - wiring money movement into `serve`: the payments tables (in the identity
 * database), the payment settings, and the recovery of operations a crash left half done.
 */
#include <stdio.h>
#include <string.h>

#include "api/pay.h"
#include "cli/setup.h"
#include "core/log.h"
#include "money/currency.h"

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

enum cf_err cli_payments_open(const struct config *c, struct cli_identity *ci, struct api *api)
{
    enum cf_err err = pay_config(c, &api->pay);
    if (err == CF_OK)
        err = payments_open(ci->db, keys_of, ci->identity, &api->payments);
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
    return err;
}

void cli_payments_close(struct api *api)
{
    if (api == NULL)
        return;
    payments_close(api->payments);
    api->payments = NULL;
}
