/* rules.c - the ledger's rules: how a leg or a resolution changes two accounts; see ledger.h. */
#include <string.h>

#include "ledger/ledger.h"
#include "money/money.h"

/* Signed 128-bit views so that no intermediate can overflow. */
static __int128 account_balance_wide(const struct ledger_account *a)
{
    if (a->normal == LEDGER_NORMAL_CREDIT)
        return (__int128)a->credits_posted - a->debits_posted;
    return (__int128)a->debits_posted - a->credits_posted;
}

static __int128 account_available_wide(const struct ledger_account *a)
{
    int64_t outflow_pending =
        a->normal == LEDGER_NORMAL_CREDIT ? a->debits_pending : a->credits_pending;
    return account_balance_wide(a) - outflow_pending;
}

int64_t ledger_account_balance(const struct ledger_account *a)
{
    CF_ASSERT(a->debits_posted >= 0 && a->credits_posted >= 0);
    __int128 b = account_balance_wide(a);
    CF_ASSERT(b >= INT64_MIN && b <= INT64_MAX); /* difference of two non-negative int64 */
    return (int64_t)b;
}

int64_t ledger_account_available(const struct ledger_account *a)
{
    __int128 v = account_available_wide(a);
    CF_ASSERT(a->debits_pending >= 0 && a->credits_pending >= 0);
    return v < INT64_MIN ? INT64_MIN : (int64_t)v; /* only reachable by overdraft accounts */
}

bool ledger_account_is_valid(const struct ledger_account *a)
{
    if (a->debits_posted < 0 || a->credits_posted < 0 || a->debits_pending < 0 ||
        a->credits_pending < 0)
        return false;
    if ((a->flags & LEDGER_ACCOUNT_NO_OVERDRAFT) && account_available_wide(a) < 0)
        return false;
    return a->normal <= LEDGER_NORMAL_DEBIT && a->kind <= LEDGER_KIND_SYSTEM;
}

/* A debit is an outflow of a credit-normal account; a credit one of a debit-normal account.
 * A frozen account takes no debit and no outflow. */
static bool account_blocks_debit(const struct ledger_account *a)
{
    return (a->flags & LEDGER_ACCOUNT_FROZEN) != 0;
}

static bool account_blocks_credit(const struct ledger_account *a)
{
    return (a->flags & LEDGER_ACCOUNT_FROZEN) != 0 && a->normal == LEDGER_NORMAL_DEBIT;
}

enum cf_err ledger_leg_check(const struct ledger_leg *leg)
{
    CF_ASSERT(leg != NULL);
    if (leg->amount <= 0)
        return CF_ERR_INVALID_AMOUNT;
    if (leg->debit_id == 0 || leg->credit_id == 0)
        return CF_ERR_ACCOUNT_NOT_FOUND;
    if (leg->debit_id == leg->credit_id)
        return CF_ERR_SAME_ACCOUNT;
    if (leg->code[0] == '\0' || strlen(leg->code) > LEDGER_CODE_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    if (leg->timeout_s < 0 || leg->timeout_s > LEDGER_TIMEOUT_S_MAX ||
        (leg->timeout_s > 0 && !leg->pending))
        return CF_ERR_TIMEOUT_INVALID;
    if (leg->metadata_len > LEDGER_METADATA_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    if (leg->credit_capped && leg->credit_max_minor < 0)
        return CF_ERR_INVALID_FIELD;
    return CF_OK;
}

/* Adds amount to *total into *out; overflow is an error. */
static enum cf_err total_add(int64_t total, int64_t amount, int64_t *out)
{
    CF_ASSERT(total >= 0 && amount >= 0);
    return money_add(total, amount, out);
}

static enum cf_err overdraft_check(const struct ledger_account *a)
{
    if ((a->flags & LEDGER_ACCOUNT_NO_OVERDRAFT) && account_available_wide(a) < 0)
        return CF_ERR_INSUFFICIENT_FUNDS;
    return CF_OK;
}

/* I6: the credited account after the leg, c, within the leg's ceiling. balance +
 * credits_pending is the most it can hold once every inflow posts and every outflow is voided. */
static enum cf_err ceiling_check(const struct ledger_account *c, const struct ledger_leg *leg)
{
    if (!leg->credit_capped || c->normal != LEDGER_NORMAL_CREDIT)
        return CF_OK;
    __int128 most = account_balance_wide(c) + c->credits_pending;
    return most > leg->credit_max_minor ? CF_ERR_LIMIT_EXCEEDED : CF_OK;
}

enum cf_err ledger_leg_apply(struct ledger_account *dr, struct ledger_account *cr,
                             const struct ledger_leg *leg)
{
    CF_ASSERT(dr != NULL && cr != NULL && dr != cr);
    CF_ASSERT(leg->amount > 0);
    CF_ASSERT(!leg->credit_capped || leg->credit_max_minor >= 0); /* ledger_leg_check */
    if (dr->id == cr->id)
        return CF_ERR_SAME_ACCOUNT;
    if (strcmp(dr->currency, leg->currency) != 0 || strcmp(cr->currency, leg->currency) != 0)
        return CF_ERR_CURRENCY_MISMATCH;
    if (((dr->flags | cr->flags) & LEDGER_ACCOUNT_CLOSED) != 0)
        return CF_ERR_ACCOUNT_CLOSED;
    if (account_blocks_debit(dr) || account_blocks_credit(cr))
        return CF_ERR_ACCOUNT_FROZEN;

    struct ledger_account d = *dr, c = *cr;
    enum cf_err err;
    if (leg->pending) {
        if ((err = total_add(d.debits_pending, leg->amount, &d.debits_pending)) != CF_OK ||
            (err = total_add(c.credits_pending, leg->amount, &c.credits_pending)) != CF_OK)
            return err;
    } else {
        if ((err = total_add(d.debits_posted, leg->amount, &d.debits_posted)) != CF_OK ||
            (err = total_add(c.credits_posted, leg->amount, &c.credits_posted)) != CF_OK)
            return err;
    }
    if ((err = overdraft_check(&d)) != CF_OK || (err = overdraft_check(&c)) != CF_OK ||
        (err = ceiling_check(&c, leg)) != CF_OK)
        return err;
    CF_ASSERT(ledger_account_is_valid(&d) && ledger_account_is_valid(&c));
    *dr = d;
    *cr = c;
    return CF_OK;
}

static enum cf_err pending_state_check(const struct ledger_entry *p, uint8_t type, int64_t now_us)
{
    if (p->type != LEDGER_ENTRY_PENDING)
        return CF_ERR_TRANSFER_NOT_PENDING;
    switch (p->status) {
    case LEDGER_STATUS_PENDING:
        break;
    case LEDGER_STATUS_POSTED:
        return CF_ERR_ALREADY_POSTED;
    case LEDGER_STATUS_VOIDED:
        return CF_ERR_ALREADY_VOIDED;
    default:
        return CF_ERR_TRANSFER_EXPIRED;
    }
    bool past = p->expires_at_us > 0 && now_us >= p->expires_at_us;
    if (type == LEDGER_ENTRY_EXPIRE_PENDING)
        return past ? CF_OK : CF_ERR_TRANSFER_NOT_PENDING;
    return past ? CF_ERR_TRANSFER_EXPIRED : CF_OK;
}

static uint8_t status_after(uint8_t type)
{
    switch (type) {
    case LEDGER_ENTRY_POST_PENDING:
        return LEDGER_STATUS_POSTED;
    case LEDGER_ENTRY_VOID_PENDING:
        return LEDGER_STATUS_VOIDED;
    default:
        CF_ASSERT(type == LEDGER_ENTRY_EXPIRE_PENDING);
        return LEDGER_STATUS_EXPIRED;
    }
}

enum cf_err ledger_pending_resolve(struct ledger_account *dr, struct ledger_account *cr,
                                   struct ledger_entry *p, uint8_t type, int64_t amount_minor,
                                   int64_t now_us, int64_t *applied_amount_out)
{
    CF_ASSERT(dr->id == p->debit_id && cr->id == p->credit_id);
    CF_ASSERT(type >= LEDGER_ENTRY_POST_PENDING && type <= LEDGER_ENTRY_EXPIRE_PENDING);
    enum cf_err err = pending_state_check(p, type, now_us);
    if (err != CF_OK)
        return err;
    int64_t posted = 0;
    if (type == LEDGER_ENTRY_POST_PENDING) {
        if (amount_minor < 0)
            return CF_ERR_INVALID_AMOUNT;
        posted = amount_minor == 0 ? p->amount : amount_minor;
        if (posted > p->amount)
            return CF_ERR_EXCEEDS_PENDING;
        if (((dr->flags | cr->flags) & LEDGER_ACCOUNT_CLOSED) != 0)
            return CF_ERR_ACCOUNT_CLOSED;
        if (account_blocks_debit(dr) || account_blocks_credit(cr))
            return CF_ERR_ACCOUNT_FROZEN;
    }
    struct ledger_account d = *dr, c = *cr;
    CF_ASSERT(d.debits_pending >= p->amount && c.credits_pending >= p->amount);
    d.debits_pending -= p->amount;
    c.credits_pending -= p->amount;
    if (posted > 0) {
        if ((err = total_add(d.debits_posted, posted, &d.debits_posted)) != CF_OK ||
            (err = total_add(c.credits_posted, posted, &c.credits_posted)) != CF_OK)
            return err;
        if ((err = overdraft_check(&d)) != CF_OK || (err = overdraft_check(&c)) != CF_OK)
            return err;
    }
    CF_ASSERT(ledger_account_is_valid(&d) && ledger_account_is_valid(&c));
    *dr = d;
    *cr = c;
    p->status = status_after(type);
    p->resolved_amount = posted;
    *applied_amount_out = type == LEDGER_ENTRY_POST_PENDING ? posted : p->amount;
    return CF_OK;
}

const char *ledger_entry_type_name(uint8_t type)
{
    static const char *const names[] = {"transfer", "pending", "post_pending", "void_pending",
                                        "expire_pending"};
    CF_ASSERT(type <= LEDGER_ENTRY_EXPIRE_PENDING);
    return names[type];
}

const char *ledger_status_name(uint8_t status)
{
    static const char *const names[] = {"posted", "pending", "voided", "expired"};
    CF_ASSERT(status <= LEDGER_STATUS_EXPIRED);
    return names[status];
}

const char *ledger_normal_name(uint8_t normal)
{
    return normal == LEDGER_NORMAL_DEBIT ? "debit" : "credit";
}

static const char *const kind_names[] = {"customer", "merchant", "system"};

const char *ledger_kind_name(uint8_t kind)
{
    CF_ASSERT(kind <= LEDGER_KIND_SYSTEM);
    return kind_names[kind];
}

int ledger_kind_parse(const char *text)
{
    for (int i = 0; i <= LEDGER_KIND_SYSTEM; i++) {
        if (strcmp(text, kind_names[i]) == 0)
            return i;
    }
    return -1;
}
