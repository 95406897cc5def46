/*
 * pay.c - what the payment routes share: system accounts and wallets opened on first use, the
 * ledger legs of an operation, running them under the operation's key, recovery of operations
 * a crash left half done, an operation's JSON, and the small helpers every pay_*.c route uses
 * (the caller, problems, Idempotency-Key, recording and replaying an operation, the caller's
 * merchant and its fee, keyed ledger steps, the activity filter).
 *
 * An operation's legs are a function of its row alone (api_pay_legs), so the command that
 * failed to finish before a crash can be rebuilt and re-submitted with the same idempotency key
 * ("op:<id>"): the writer either applies it now or replays what it stored then.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/pay.h"
#include "api/pay_fx.h"
#include "api/risk_monitor.h"
#include "api/risk_screening.h"
#include "api/risk_freeze.h"
#include "core/clock.h"
#include "core/log.h"
#include "money/currency.h"
#include "money/fee.h"
#include "money/fx.h"

#define PAY_RECOVER_PAGE 32    /* operations recovery reads at once */
#define PAY_OPEN_RETRIES 200   /* waits for a concurrent opening of the same account... */
#define PAY_OPEN_RETRY_US 5000 /* ...for at most a second */

/* Accounts ----------------------------------------------------------------------------------- */

enum cf_err api_created_account_id(const struct writer_cmd *cmd, uint64_t *out)
{
    if (cmd->err != CF_OK)
        return cmd->err;
    if (!cmd->replayed && cmd->account_out.id != 0) {
        *out = cmd->account_out.id;
        return CF_OK;
    }
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *idv = o != NULL ? json_object_get(o, "id") : NULL;
    enum cf_err err = CF_ERR_INTERNAL;
    if (idv != NULL && json_is_string(idv))
        err = id_parse(ID_PREFIX_ACCOUNT, json_string_value(idv), json_string_length(idv), out);
    json_decref(o);
    return err;
}

enum cf_err api_pay_account_create(struct api *api, struct arena *arena,
                                   const struct api_account_spec *s, uint64_t *id_out)
{
    struct writer_cmd *cmd = arena_calloc(arena, 1, sizeof(*cmd));
    if (cmd == NULL)
        return CF_ERR_NOMEM;
    cmd->type = WRITER_CMD_ACCOUNT_CREATE;
    snprintf(cmd->account.currency, sizeof(cmd->account.currency), "%s", s->currency);
    cmd->account.normal = s->normal;
    cmd->account.kind = s->kind;
    cmd->account.flags = s->flags;
    cmd->owner = s->owner;
    cmd->owner_len = strlen(s->owner);
    cmd->idem_key = s->key;
    cmd->idem_key_len = strlen(s->key);
    hash_sha256(s->key, cmd->idem_key_len, cmd->request_hash);
    /* two first uses at once (two payments meeting a fee account not yet opened) share the key:
     * the second waits for the first's answer, which it then replays */
    enum cf_err err = CF_ERR_IDEM_KEY_IN_FLIGHT;
    for (int i = 0; i < PAY_OPEN_RETRIES && err == CF_ERR_IDEM_KEY_IN_FLIGHT; i++) {
        if (i > 0)
            usleep(PAY_OPEN_RETRY_US);
        err = api_submit_wait(api, cmd, arena);
    }
    if (err == CF_OK)
        err = api_created_account_id(cmd, id_out);
    return err;
}

/* Debit-normal (assets the house is owed) or credit-normal, by the system account's role. */
static uint8_t system_normal(const char *name)
{
    return strcmp(name, PAY_SYS_GATEWAY_CLEARING) == 0 ? LEDGER_NORMAL_DEBIT : LEDGER_NORMAL_CREDIT;
}

enum cf_err api_pay_system(struct api *api, struct arena *arena, const char *name,
                           const char *currency, uint64_t *id_out)
{
    enum cf_err err = payments_system_get(api->payments, name, currency, id_out);
    if (err != CF_ERR_NOT_FOUND)
        return err;
    char owner[64], key[96];
    snprintf(owner, sizeof(owner), "system:%s", name);
    snprintf(key, sizeof(key), "system:%s:%s", name, currency);
    struct api_account_spec s = {.owner = owner,
                                 .currency = currency,
                                 .kind = LEDGER_KIND_SYSTEM,
                                 .normal = system_normal(name),
                                 .flags = 0,
                                 .key = key};
    uint64_t id = 0;
    if ((err = api_pay_account_create(api, arena, &s, &id)) != CF_OK)
        return err;
    return payments_system_put(api->payments, name, currency, id, id_out);
}

/* The customer's account in currency among their wallet accounts, or CF_ERR_NOT_FOUND. */
static enum cf_err wallet_find(struct api *api, struct arena *arena, const char *user_id,
                               const char *currency, uint64_t *id_out)
{
    uint64_t ids[IDENTITY_WALLET_ACCOUNTS_MAX];
    size_t n = 0;
    enum cf_err err =
        identity_wallet_list(api->identity, user_id, ids, IDENTITY_WALLET_ACCOUNTS_MAX, &n);
    if (err != CF_OK || n == 0)
        return err != CF_OK ? err : CF_ERR_NOT_FOUND;
    struct store_reader *r;
    if ((err = api->store->ops->r_open(api->store, &r)) != CF_OK)
        return err;
    err = CF_ERR_NOT_FOUND;
    for (size_t i = 0; i < n; i++) {
        struct store_account_row row;
        enum cf_err e = api->store->ops->r_account_get(r, ids[i], &row, arena);
        if (e == CF_OK && strcmp(row.account.currency, currency) == 0 &&
            strcmp(row.owner, user_id) == 0) {
            *id_out = ids[i];
            err = CF_OK;
            break;
        }
    }
    api->store->ops->r_close(r);
    return err;
}

enum cf_err api_pay_wallet(struct api *api, struct arena *arena, const char *user_id,
                           const char *currency, bool create, uint64_t *id_out)
{
    enum cf_err err = wallet_find(api, arena, user_id, currency, id_out);
    if (err != CF_ERR_NOT_FOUND || !create)
        return err;
    if (!api_pay_currency_offered(api, currency))
        return CF_ERR_UNKNOWN_CURRENCY;
    char key[IDEM_STORED_KEY_BYTES_MAX];
    snprintf(key, sizeof(key), "%s:wallet-open:%s", user_id, currency);
    uint32_t frozen = 0; /* a frozen customer's new wallet is opened frozen (risk_freeze.h) */
    if ((err = api_risk_wallet_flags(api, user_id, &frozen)) != CF_OK)
        return err;
    struct api_account_spec s = {.owner = user_id,
                                 .currency = currency,
                                 .kind = LEDGER_KIND_CUSTOMER,
                                 .normal = LEDGER_NORMAL_CREDIT,
                                 .flags = LEDGER_ACCOUNT_NO_OVERDRAFT | frozen,
                                 .key = key};
    if ((err = api_pay_account_create(api, arena, &s, id_out)) != CF_OK ||
        (err = identity_wallet_add(api->identity, user_id, *id_out, currency)) != CF_OK)
        return err;
    return api_risk_wallet_settle(api, arena, user_id, *id_out); /* a freeze that came between */
}

bool api_pay_currency_offered(const struct api *api, const char *currency)
{
    for (size_t i = 0; i < api->pay.currencies_n; i++) {
        if (strcmp(api->pay.currencies[i], currency) == 0)
            return true;
    }
    return false;
}

/* Legs --------------------------------------------------------------------------------------- */

void api_pay_leg_set(struct ledger_leg *l, uint64_t dr, uint64_t cr, int64_t amount,
                     const char *currency, const char *code)
{
    memset(l, 0, sizeof(*l));
    l->debit_id = dr;
    l->credit_id = cr;
    l->amount = amount;
    snprintf(l->currency, sizeof(l->currency), "%s", currency);
    snprintf(l->code, sizeof(l->code), "%s", code);
}

/* The FX system accounts of a cross-currency operation paying out in `out`: liquidity in both
 * currencies, and revenue in `out` when there is a spread. */
struct fx_accounts {
    uint64_t liq_in, liq_out, revenue;
};

static enum cf_err fx_accounts_get(struct api *api, struct arena *arena, const char *in,
                                   const char *out, bool spread, struct fx_accounts *a)
{
    memset(a, 0, sizeof(*a));
    enum cf_err err = api_pay_system(api, arena, PAY_SYS_FX_LIQUIDITY, in, &a->liq_in);
    if (err == CF_OK)
        err = api_pay_system(api, arena, PAY_SYS_FX_LIQUIDITY, out, &a->liq_out);
    if (err == CF_OK && spread)
        err = api_pay_system(api, arena, PAY_SYS_FX_REVENUE, out, &a->revenue);
    return err;
}

/* A conversion's spread, from its reference "spread_minor=<n>" (pay_fx.h). */
static enum cf_err conversion_spread(const struct pay_op *op, int64_t *out)
{
    static const char tag[] = PAY_FX_SPREAD_REF;
    const char *d = op->reference + sizeof(tag) - 1;
    int64_t spread = 0;
    if (strncmp(op->reference, tag, sizeof(tag) - 1) != 0 || *d == '\0')
        return CF_ERR_INTERNAL;
    for (; *d >= '0' && *d <= '9' && spread <= (INT64_MAX - 9) / 10; d++)
        spread = spread * 10 + (*d - '0');
    if (*d != '\0')
        return CF_ERR_INTERNAL;
    *out = spread;
    return CF_OK;
}

/* A payment, in one currency or across two (pay_fx.h, "Payments across currencies"): the
 * merchant pays its fee, in its own currency, out of what it receives. */
static enum cf_err payment_legs(struct api *api, struct arena *arena, const struct pay_op *op,
                                uint64_t fees, struct ledger_leg *legs, size_t *n)
{
    const char *mine = op->credit_currency; /* the merchant's */
    if (strcmp(op->currency, mine) == 0) {
        api_pay_leg_set(&legs[(*n)++], op->payer_account, op->payee_account, op->amount_minor,
                        op->currency, "payment");
    } else {
        struct fx_accounts a;
        enum cf_err err = fx_accounts_get(api, arena, op->currency, mine, op->spread_minor > 0, &a);
        if (err != CF_OK)
            return err;
        api_pay_leg_set(&legs[(*n)++], op->payer_account, a.liq_in, op->amount_minor,
                        op->currency, "payment_fx");
        api_pay_leg_set(&legs[(*n)++], a.liq_out, op->payee_account, op->credit_minor, mine,
                        "payment");
        if (op->spread_minor > 0)
            api_pay_leg_set(&legs[(*n)++], a.liq_out, a.revenue, op->spread_minor, mine,
                            "payment_spread");
    }
    if (op->fee_minor > 0)
        api_pay_leg_set(&legs[(*n)++], op->payee_account, fees, op->fee_minor, mine,
                        "payment_fee");
    return CF_OK;
}

/* A refund runs its payment backwards from the merchant (currency) to the customer
 * (credit_currency): the fee share comes back to the merchant first, then the refund. */
static enum cf_err refund_legs(struct api *api, struct arena *arena, const struct pay_op *op,
                               uint64_t fees, struct ledger_leg *legs, size_t *n)
{
    if (op->fee_minor > 0)
        api_pay_leg_set(&legs[(*n)++], fees, op->payer_account, op->fee_minor, op->currency,
                        "refund_fee");
    if (strcmp(op->currency, op->credit_currency) == 0) {
        api_pay_leg_set(&legs[(*n)++], op->payer_account, op->payee_account, op->amount_minor,
                        op->currency, "refund");
        return CF_OK;
    }
    /* liq_in: liquidity in the customer's currency; liq_out and revenue: in the merchant's,
     * where the payment put the amount and the spread */
    struct fx_accounts a;
    enum cf_err err = fx_accounts_get(api, arena, op->credit_currency, op->currency,
                                      op->spread_minor > 0, &a);
    if (err != CF_OK)
        return err;
    api_pay_leg_set(&legs[(*n)++], op->payer_account, a.liq_out, op->amount_minor, op->currency,
                    "refund");
    if (op->spread_minor > 0)
        api_pay_leg_set(&legs[(*n)++], a.revenue, a.liq_out, op->spread_minor, op->currency,
                        "refund_spread");
    api_pay_leg_set(&legs[(*n)++], a.liq_in, op->payee_account, op->credit_minor,
                    op->credit_currency, "refund_fx");
    return CF_OK;
}

/* wallet(from) -> fx_liquidity(from), fx_liquidity(to) -> wallet(to), spread to revenue. */
static enum cf_err conversion_legs(struct api *api, struct arena *arena, const struct pay_op *op,
                                   struct ledger_leg *legs, size_t *n)
{
    int64_t spread = 0;
    struct fx_accounts a;
    enum cf_err err = conversion_spread(op, &spread);
    if (err != CF_OK || strcmp(op->currency, op->credit_currency) == 0 || op->fee_minor != 0)
        return CF_ERR_INTERNAL;
    if ((err = fx_accounts_get(api, arena, op->currency, op->credit_currency, spread > 0, &a)) !=
        CF_OK)
        return err;
    api_pay_leg_set(&legs[(*n)++], op->payer_account, a.liq_in, op->amount_minor, op->currency,
                    "conversion");
    api_pay_leg_set(&legs[(*n)++], a.liq_out, op->payee_account, op->credit_minor,
                    op->credit_currency, "conversion_credit");
    if (spread > 0)
        api_pay_leg_set(&legs[(*n)++], a.liq_out, a.revenue, spread, op->credit_currency,
                        "conversion_spread");
    return CF_OK;
}

enum cf_err api_pay_legs(struct api *api, struct arena *arena, const struct pay_op *op,
                         struct ledger_leg *legs, size_t *n_out)
{
    /* a payment's fee is the merchant's, in the currency it receives */
    const char *fee_currency = op->kind == PAY_KIND_PAYMENT ? op->credit_currency : op->currency;
    uint64_t fees = 0;
    size_t n = 0;
    enum cf_err err = CF_OK;
    if (op->fee_minor > 0 &&
        (err = api_pay_system(api, arena, PAY_SYS_FEE_REVENUE, fee_currency, &fees)) != CF_OK)
        return err;
    switch (op->kind) {
    case PAY_KIND_SEND: /* the sender pays the amount and the fee */
        api_pay_leg_set(&legs[n++], op->payer_account, op->payee_account, op->amount_minor,
                        op->currency, "send");
        if (op->fee_minor > 0)
            api_pay_leg_set(&legs[n++], op->payer_account, fees, op->fee_minor, op->currency,
                            "send_fee");
        break;
    case PAY_KIND_PAYMENT:
        err = payment_legs(api, arena, op, fees, legs, &n);
        break;
    case PAY_KIND_REFUND:
        err = refund_legs(api, arena, op, fees, legs, &n);
        break;
    case PAY_KIND_CONVERSION:
        err = conversion_legs(api, arena, op, legs, &n);
        break;
    default:
        return CF_ERR_INTERNAL; /* the gateway kinds run through holds, not here */
    }
    if (err != CF_OK)
        return err;
    CF_ASSERT(n >= 1 && n <= API_PAY_LEGS_MAX);
    /* the payee's KYC maximum balance rides on every leg crediting its account: the ledger
     * checks it in the same step as the credit (ledger.h, I6; api/risk_limits.h) */
    for (size_t i = 0; i < n && op->payee_max_balance_minor >= 0; i++) {
        legs[i].credit_capped = legs[i].credit_id == op->payee_account;
        legs[i].credit_max_minor = legs[i].credit_capped ? op->payee_max_balance_minor : 0;
    }
    *n_out = n;
    return CF_OK;
}

/* Running ------------------------------------------------------------------------------------ */

/* The stable code of a stored problem answer ("insufficient_funds"). */
static void problem_code(const struct writer_cmd *cmd, char *out, size_t out_bytes)
{
    snprintf(out, out_bytes, "%s", cf_err_code(cmd->err != CF_OK ? cmd->err : CF_ERR_INTERNAL));
    if (cmd->resp_body == NULL)
        return;
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *c = o != NULL ? json_object_get(o, "code") : NULL;
    if (c != NULL && json_is_string(c))
        snprintf(out, out_bytes, "%s", json_string_value(c));
    json_decref(o);
}

uint64_t api_pay_entry_seq(const struct writer_cmd *cmd, bool pending_out)
{
    if (!cmd->replayed)
        return pending_out ? cmd->pending_out.seq : cmd->entries_out[0].seq;
    uint64_t seq = 0;
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *id = o != NULL ? json_object_get(o, "id") : NULL;
    if (id != NULL && json_is_string(id) &&
        id_parse(ID_PREFIX_TRANSFER, json_string_value(id), json_string_length(id), &seq) != CF_OK)
        seq = 0;
    json_decref(o);
    return seq;
}

/* The group's first entry in a fresh or stored answer. */
uint64_t api_pay_group_seq(const struct writer_cmd *cmd)
{
    if (!cmd->replayed && cmd->entries_n > 0)
        return cmd->entries_out[0].group_seq;
    uint64_t seq = 0;
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *g = o != NULL ? json_object_get(o, "group_id") : NULL;
    if (g != NULL && json_is_string(g) &&
        id_parse(ID_PREFIX_TRANSFER, json_string_value(g), json_string_length(g), &seq) != CF_OK)
        seq = 0;
    json_decref(o);
    return seq;
}

enum cf_err api_pay_execute(struct api *api, struct arena *arena, struct pay_op *op)
{
    if (op->review) /* monitoring sent it to an analyst: hold the money instead */
        return api_risk_review_hold(api, arena, op);
    struct ledger_leg *legs = arena_calloc(arena, API_PAY_LEGS_MAX, sizeof(*legs));
    struct writer_cmd *cmd = arena_calloc(arena, 1, sizeof(*cmd));
    char *key = arena_alloc(arena, PAY_ID_BYTES_MAX + 8);
    if (legs == NULL || cmd == NULL || key == NULL)
        return CF_ERR_NOMEM;
    size_t n = 0;
    enum cf_err err = api_pay_legs(api, arena, op, legs, &n);
    if (err != CF_OK)
        return err;
    int key_len = snprintf(key, PAY_ID_BYTES_MAX + 8, "op:%s", op->id);
    cmd->type = WRITER_CMD_TRANSFER;
    cmd->legs = legs;
    cmd->legs_n = n;
    cmd->variant = API_VARIANT_LEGS;
    cmd->idem_key = key;
    cmd->idem_key_len = (size_t)key_len;
    hash_sha256(key, (size_t)key_len, cmd->request_hash);
    if ((err = api_submit_wait(api, cmd, arena)) != CF_OK)
        return err; /* never ran: the operation stays PROCESSING for a retry or recovery */
    struct pay_op_update u = {.status = PAY_STATUS_COMPLETED, .relaxed = true};
    char code[PAY_ERROR_BYTES_MAX];
    if (cmd->err != CF_OK || cmd->resp_status >= 400) {
        problem_code(cmd, code, sizeof(code));
        u.status = PAY_STATUS_FAILED;
        u.error = code;
    } else {
        u.ledger_seq = api_pay_group_seq(cmd);
    }
    int64_t now = cf_clock_now_us(&cf_clock_real);
    err = payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u, now);
    if (err == CF_ERR_CONFLICT)
        err = CF_OK; /* another worker (recovery) finished it first: read what it wrote */
    if (err == CF_OK)
        err = payments_op_get(api->payments, op->id, op);
    return err;
}

/* A payment of a dynamic QR code recorded before a crash took its code: it may run only if it
 * holds the code (taking it now if it is still free); otherwise it fails, moving nothing. */
static enum cf_err recover_qr_claim(struct api *api, struct pay_op *op, bool *go)
{
    *go = true;
    if (op->kind != PAY_KIND_PAYMENT || strncmp(op->reference, "qr_", 3) != 0)
        return CF_OK;
    struct pay_qr q;
    int64_t now = cf_clock_now_us(&cf_clock_real);
    enum cf_err err = payments_qr_get(api->payments, op->reference, &q);
    if (err == CF_OK && strcmp(q.used_by, op->id) == 0)
        return CF_OK;
    if (err == CF_OK)
        err = payments_qr_claim(api->payments, op->reference, op->id, now);
    if (err == CF_OK)
        return CF_OK;
    if (err != CF_ERR_QR_EXPIRED && err != CF_ERR_NOT_FOUND)
        return err;
    *go = false;
    struct pay_op_update u = {.status = PAY_STATUS_FAILED, .error = cf_err_code(CF_ERR_QR_EXPIRED)};
    return payments_op_update(api->payments, op->id, 1u << PAY_STATUS_PROCESSING, &u, now);
}

/* Finishes one operation left PROCESSING. */
static enum cf_err recover_one(struct api *api, struct arena *arena, struct pay_op *op)
{
    if (op->kind != PAY_KIND_SEND && op->kind != PAY_KIND_PAYMENT && op->kind != PAY_KIND_REFUND &&
        op->kind != PAY_KIND_CONVERSION)
        return api_pay_funding_recover(api, arena, op);
    bool go = true;
    enum cf_err err = recover_qr_claim(api, op, &go);
    if (err == CF_OK && go)
        err = api_pay_execute(api, arena, op);
    return err;
}

enum cf_err api_pay_recover(struct api *api, struct arena *arena, size_t *n_out)
{
    struct pay_op *ops = arena_calloc(arena, PAY_RECOVER_PAGE, sizeof(*ops));
    if (ops == NULL)
        return CF_ERR_NOMEM;
    size_t n = 0, done = 0;
    uint64_t after = 0;
    int64_t now = cf_clock_now_us(&cf_clock_real);
    enum cf_err err = CF_OK;
    do { /* every page once: what cannot be finished now stays for an operator, and logged */
        err = payments_ops_stuck(api->payments, now, after, ops, PAY_RECOVER_PAGE, &n);
        for (size_t i = 0; i < n && err == CF_OK; i++) {
            after = ops[i].row;
            enum cf_err e = recover_one(api, arena, &ops[i]);
            if (e == CF_OK)
                done++;
            else
                cf_log(LOG_WARN, "payment not recovered", "op", ops[i].id, "error", cf_err_code(e),
                       NULL);
        }
    } while (err == CF_OK && n == PAY_RECOVER_PAGE);
    *n_out = done;
    return err;
}

/* JSON --------------------------------------------------------------------------------------- */

json_t *api_pay_op_json(const struct pay_op *op, const char *viewer)
{
    char created[40], updated[40], tr[ID_TEXT_BYTES_MAX] = "";
    cf_time_format_rfc3339(op->created_at_us, created, sizeof(created));
    cf_time_format_rfc3339(op->updated_at_us, updated, sizeof(updated));
    if (op->ledger_seq > 0)
        id_format(ID_PREFIX_TRANSFER, op->ledger_seq, tr);
    bool out = viewer != NULL && strcmp(op->payer, viewer) == 0;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:I,s:s,s:s}", "id", op->id, "type",
                          pay_kind_name(op->kind), "status", pay_status_name(op->status),
                          "direction", out ? "out" : "in", "amount_minor",
                          (json_int_t)op->amount_minor, "currency", op->currency, "fee_minor",
                          (json_int_t)op->fee_minor, "created_at", created, "updated_at", updated);
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "counterparty", json_string(out ? op->payee : op->payer));
    /* a payment's fee is the merchant's, in the currency it receives */
    json_object_set_new(o, "fee_currency", json_string(op->kind == PAY_KIND_PAYMENT &&
                                                               op->credit_currency[0] != '\0'
                                                           ? op->credit_currency
                                                           : op->currency));
    if (op->credit_currency[0] != '\0' && strcmp(op->credit_currency, op->currency) != 0) {
        char rate[FX_RATE_TEXT_BYTES_MAX];
        json_object_set_new(o, "credit_minor", json_integer(op->credit_minor));
        json_object_set_new(o, "credit_currency", json_string(op->credit_currency));
        if (op->rate_e9 >= 1 && op->rate_e9 <= FX_RATE_E9_MAX &&
            fx_rate_format(op->rate_e9, rate, sizeof(rate)) > 0)
            json_object_set_new(o, "rate", json_string(rate));
    }
    if (tr[0] != '\0')
        json_object_set_new(o, "transfer_id", json_string(tr));
    if (op->reference[0] != '\0')
        json_object_set_new(o, "reference", json_string(op->reference));
    if (op->note[0] != '\0')
        json_object_set_new(o, "note", json_string(op->note));
    if (op->parent_id[0] != '\0')
        json_object_set_new(o, "payment_id", json_string(op->parent_id));
    if (op->kind == PAY_KIND_PAYMENT)
        json_object_set_new(o, "refunded_minor", json_integer(op->refunded_minor));
    if (op->error[0] != '\0')
        json_object_set_new(o, "error", json_string(op->error));
    if (op->gateway_ref[0] != '\0' &&
        (op->kind == PAY_KIND_TOPUP || op->kind == PAY_KIND_WITHDRAWAL ||
         op->kind == PAY_KIND_PAYOUT)) /* for reconciliation */
        json_object_set_new(o, "gateway_reference", json_string(op->gateway_ref));
    return o;
}

void api_pay_op_reply(struct http_request *req, struct http_response *resp, int status,
                      const struct pay_op *op, const char *viewer)
{
    json_t *o = api_pay_op_json(op, viewer);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    api_reply_object(req, resp, status, o);
}

/* Answers a finished operation: 201 when completed or waiting, its stored error when failed. */
void api_pay_outcome_reply(struct http_request *req, struct http_response *resp,
                           const struct pay_op *op, const char *viewer)
{
    if (op->status != PAY_STATUS_FAILED) {
        api_pay_op_reply(req, resp, op->status == PAY_STATUS_COMPLETED ? 201 : 202, op, viewer);
        return;
    }
    enum cf_err e = cf_err_from_code(op->error);
    char detail[PAY_ID_BYTES_MAX + 32];
    snprintf(detail, sizeof(detail), "operation %s failed", op->id);
    api_problem(req, resp, e != CF_OK ? e : CF_ERR_INTERNAL,
                arena_strndup(req->arena, detail, strlen(detail)));
}

/* Shared helpers ----------------------------------------------------------------------------- */

int64_t api_pay_now_us(void) { return cf_clock_now_us(&cf_clock_real); }

const char *api_pay_me_id(const struct http_request *req)
{
    const struct api_principal *p = api_principal(req);
    CF_ASSERT(p != NULL && !p->bootstrap);
    return p->user.user_id;
}

void api_pay_problem_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                           const char *detail)
{
    api_problem(req, resp, err,
                detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL);
}

enum cf_err api_pay_idem_read(struct http_request *req, char idem[PAY_IDEM_BYTES_MAX],
                              uint8_t hash[HASH_BYTES])
{
    CF_ASSERT(req != NULL && idem != NULL && hash != NULL);
    struct writer_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    enum cf_err err = api_idem_prepare(req, &cmd, true);
    if (err != CF_OK)
        return err;
    if (cmd.idem_key_len >= PAY_IDEM_BYTES_MAX)
        return CF_ERR_IDEM_KEY_INVALID;
    int n = snprintf(idem, PAY_IDEM_BYTES_MAX, "%.*s", (int)cmd.idem_key_len, cmd.idem_key);
    CF_ASSERT(n >= 0 && n < PAY_IDEM_BYTES_MAX);
    memcpy(hash, cmd.request_hash, HASH_BYTES);
    return CF_OK;
}

enum cf_err api_pay_op_stored(struct http_request *req, struct pay_op *op)
{
    struct api *api = req->app;
    char idem[PAY_IDEM_BYTES_MAX];
    uint8_t hash[HASH_BYTES];
    struct pay_op found;
    enum cf_err err = api_pay_idem_read(req, idem, hash);
    if (err == CF_OK)
        err = payments_op_by_idem(api->payments, idem, &found);
    if (err == CF_OK && !hash_equal(found.request_hash, hash, HASH_BYTES))
        err = CF_ERR_IDEM_KEY_REUSED;
    if (err == CF_OK)
        *op = found;
    return err;
}

enum cf_err api_pay_op_record(struct api *api, const struct api_risk_ctx *rc, struct pay_op *op,
                              bool *replay)
{
    CF_ASSERT(api != NULL && rc != NULL && op != NULL && replay != NULL);
    struct pay_op stored;
    bool existed = false, review = false;
    enum cf_err err = rc->fresh ? CF_ERR_NOT_FOUND /* the route just looked */
                                : payments_op_by_idem(api->payments, op->idem, &stored);
    if (err == CF_OK) {
        existed = true;
    } else if (err == CF_ERR_NOT_FOUND) { /* new: limits, then scored, before it is recorded */
        err = op->kind == PAY_KIND_WITHDRAWAL || op->kind == PAY_KIND_PAYOUT
                  ? api_risk_screening_check(api, op->payer) /* a sanctions hit holds payouts */
                  : CF_OK;
        if (err == CF_OK)
            err = api_risk_limits(api, rc->req != NULL ? rc->req->arena : NULL, op);
        if (err == CF_OK)
            err = api_risk_score(api, rc, op, &review);
    }
    if (err != CF_OK)
        return err;
    op->review = review;
    if (!existed)
        err = payments_op_begin(api->payments, op, api_pay_now_us(), &stored, &existed);
    if (err != CF_OK)
        return err;
    *replay = existed;
    if (existed && !hash_equal(stored.request_hash, op->request_hash, HASH_BYTES))
        return CF_ERR_IDEM_KEY_REUSED;
    *op = stored;
    CF_ASSERT(op->id[0] != '\0');
    return CF_OK;
}

enum cf_err api_pay_merchant_mine(struct http_request *req, struct pay_merchant *m)
{
    struct api *api = req->app;
    struct identity_merchant im;
    enum cf_err err = identity_merchant_of(api->identity, &api_principal(req)->user, &im);
    if (err == CF_OK)
        err = payments_merchant_get(api->payments, im.merchant_id, false, m);
    return err == CF_ERR_NOT_FOUND ? CF_ERR_CONFLICT : err;
}

enum cf_err api_pay_merchant_fee(struct api *api, const struct pay_merchant *m, int64_t amount,
                                 int64_t *fee_out)
{
    struct fee_rule r = {0};
    if (m->fee_bps >= 0) {
        r.bps = m->fee_bps;
        r.fixed_minor = m->fee_fixed_minor;
    } else {
        struct pay_fee_row row;
        enum cf_err err = payments_fee_get(api->payments, m->mcc, &row);
        if (err != CF_OK)
            return err;
        r.bps = row.bps;
        r.fixed_minor = row.fixed_minor;
    }
    return fee_compute(&r, amount, fee_out);
}

/* A step's key: "op:<id>:<step>". */
#define PAY_STEP_KEY_BYTES (PAY_ID_BYTES_MAX + 16)

struct writer_cmd *api_pay_step_cmd(struct arena *arena, const struct pay_op *op, const char *step)
{
    CF_ASSERT(op != NULL && op->id[0] != '\0' && step != NULL);
    struct writer_cmd *cmd = arena_calloc(arena, 1, sizeof(*cmd));
    char *key = arena_alloc(arena, PAY_STEP_KEY_BYTES);
    if (cmd == NULL || key == NULL)
        return NULL;
    int n = snprintf(key, PAY_STEP_KEY_BYTES, "op:%s:%s", op->id, step);
    CF_ASSERT(n > 0 && n < PAY_STEP_KEY_BYTES);
    cmd->idem_key = key;
    cmd->idem_key_len = (size_t)n;
    hash_sha256(key, (size_t)n, cmd->request_hash);
    cmd->variant = API_VARIANT_SINGLE;
    return cmd;
}

enum cf_err api_pay_step_outcome(const struct writer_cmd *cmd)
{
    if (cmd->err != CF_OK)
        return cmd->err;
    if (cmd->resp_status < 400)
        return CF_OK;
    enum cf_err e = CF_ERR_INTERNAL;
    json_t *o = json_loadb(cmd->resp_body, cmd->resp_body_len, 0, NULL);
    json_t *c = o != NULL ? json_object_get(o, "code") : NULL;
    if (c != NULL && json_is_string(c))
        e = cf_err_from_code(json_string_value(c));
    json_decref(o);
    return e;
}

enum cf_err api_pay_filter_read(struct http_request *req, struct pay_filter *f, const char **detail)
{
    CF_ASSERT(req != NULL && f != NULL && detail != NULL);
    const char *from = http_request_query(req, "from"), *to = http_request_query(req, "to");
    const char *type = http_request_query(req, "type");
    const char *cur = http_request_query(req, "currency");
    *detail = "from";
    if (from != NULL && cf_time_parse_rfc3339(from, &f->from_us) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    *detail = "to";
    if (to != NULL && cf_time_parse_rfc3339(to, &f->to_us) != CF_OK)
        return CF_ERR_INVALID_FIELD;
    *detail = "type";
    int kind = type != NULL ? pay_kind_parse(type) : 0;
    if (kind < 0)
        return CF_ERR_INVALID_FIELD;
    f->kind = (uint8_t)kind;
    *detail = "currency";
    if (cur != NULL && currency_find(cur, strlen(cur)) == NULL)
        return CF_ERR_UNKNOWN_CURRENCY;
    f->currency = cur;
    *detail = NULL;
    CF_ASSERT(f->kind <= PAY_KIND_MAX);
    return CF_OK;
}

enum cf_err api_pay_op_open(struct http_request *req, enum pay_kind kind, struct pay_op *op)
{
    CF_ASSERT(kind >= 1 && kind <= PAY_KIND_MAX && op != NULL);
    struct pay_op fresh;
    memset(&fresh, 0, sizeof(fresh));
    enum cf_err err = api_pay_idem_read(req, fresh.idem, fresh.request_hash);
    if (err != CF_OK)
        return err;
    payments_op_id_new(kind, fresh.id);
    fresh.kind = (uint8_t)kind;
    *op = fresh;
    CF_ASSERT(op->id[0] != '\0' && op->idem[0] != '\0');
    return CF_OK;
}

void api_pay_op_run_reply(struct http_request *req, struct http_response *resp, struct pay_op *op,
                          const char *viewer)
{
    CF_ASSERT(op != NULL && viewer != NULL);
    struct api *api = req->app;
    enum cf_err err = CF_OK;
    if (op->status == PAY_STATUS_PROCESSING)
        err = api_pay_execute(api, req->arena, op);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    api_pay_outcome_reply(req, resp, op, viewer);
}
