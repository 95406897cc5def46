/*
 * pay_statements.h - history export, monthly statements, merchant settlement reports (the
 * handlers of pay_statements.c, for the route table) and the scheduler of daily merchant
 * payouts (pay_scheduler.c).
 *
 * CSV export (GET /v1/me/activity/export, GET /v1/merchant/activity/export): the caller's
 * operations, newest first, filtered like the activity list (from, to, type, currency; no
 * cursor), as text/csv with the header
 *
 *     created_at,id,type,status,direction,counterparty,amount,fee,currency,reference,note
 *
 * Amounts are in major units at the currency's scale ("12.34"), never negative (direction
 * says which way the money went); fee is the operation's fee as the activity list shows it.
 * Across currencies a row shows the viewer's side: the payee sees what it received in its
 * currency (a merchant paid from another currency, a customer refunded), the payer what it
 * paid; the fee shows only when it is in the row's currency (a payment's fee is the
 * merchant's, in the merchant's currency).
 * Fields are escaped by RFC 4180 (a field holding a comma, a double quote, CR or LF is quoted,
 * quotes doubled; lines end in CRLF). Against spreadsheet formula injection, a text field that
 * starts with '=', '+', '-', '@', TAB or CR gets a leading apostrophe ("'=1+1"): spreadsheets
 * then show the text instead of evaluating it; a program reading the file sees the apostrophe.
 * More than STATEMENT_EXPORT_ROWS_MAX rows: 422 range_too_large, asking for a narrower range.
 *
 * Monthly statement (GET /v1/me/statements/{month}, GET /v1/merchant/statements/{month};
 * month "2026-11", UTC): per ledger account (the customer's wallet in each currency, the
 * merchant's settlement account) opening balance, money in, money out, fees and closing
 * balance, and the month's operations in that currency.
 *
 *   Balances come from the ledger, not from the operations: the account's whole journal
 *   history is read in one store snapshot and every entry's change to the posted balance
 *   (TRANSFER and POST_PENDING entries; holds, voids and expiries change no posted balance) is
 *   put before, inside or after the month by the entry's own time. So
 *     opening(m)  = the sum of the changes before the month's first instant,
 *     closing(m)  = opening(m) + in - out - fees = the sum before the next month's first instant,
 *   which makes closing(m) == opening(m + 1) an identity, and the sum over the whole history is
 *   checked to equal the account's live posted balance (CF_ERR_CORRUPT if not: the same rule
 *   `coffer verify` checks), so the current month's closing balance is the live balance. The
 *   whole history is read, not just the recent part, because entry times follow the writers'
 *   clocks, which may step back; a statement cannot be made exact by stopping early.
 *   Summing completed operations instead would miss every ledger movement that is not a
 *   payment operation (ledger transfers by staff, a customer's own transfers) and mis-date the
 *   ones held and posted later.
 *
 *   money in / money out: changes that raise / lower the balance, other than fees; fees: the
 *   net of what moved between the account and the fee revenue account (a fee share returned by
 *   a refund lowers it, so it may be negative). Balances are posted balances: money held for a
 *   pending withdrawal or payout is still in them until it posts.
 *
 *   operations: the month's completed operations in that currency (by their creation time);
 *   pending: those of the month still waiting (processing, pending, action_required), shown
 *   with their status and counted in no total until their money posts; failed ones moved no
 *   money and are only counted (failed_n). An operation created just before midnight whose
 *   money posted after it is listed in its month and counted in the next. complete is false
 *   while the month has not ended (the closing balance is then "so far"). A statement lists at
 *   most STATEMENT_OPERATIONS_MAX operations (newest first); past that operations_truncated is
 *   true and the older ones are left out of the lists and of failed_n, never out of the totals
 *   (the CSV export by date range has them). An account whose history passes
 *   STATEMENT_ENTRIES_MAX entries is 422 range_too_large.
 *
 * Settlement report (GET /v1/merchant/payouts/{id}/report): the merchant's completed
 * payments and refunds in its settlement currency recorded after its previous payout and
 * before this one, by the operations' row order (the order they were recorded, which no clock
 * can reorder); the previous payout is the latest earlier one that did not fail (a failed
 * payout paid nothing, so its period rolls into the next). gross = the payments' amounts, fees =
 * their fees less the fee shares refunds returned, refunds = the refunds' amounts, net =
 * gross - refunds - fees; carried_over = the payout's amount - net (money from before the
 * period paid out now, or part of the period's net left in the balance). The counted
 * operations are listed up to STATEMENT_OPERATIONS_MAX (then operations_truncated is true;
 * the sums are always whole); a period of more than REPORT_SCAN_MAX operations is 422
 * range_too_large. Another merchant's payout, or an operation that is not a payout, is 404.
 *
 * All handlers run on the worker pool and only read.
 */
#ifndef COFFER_API_PAY_STATEMENTS_H
#define COFFER_API_PAY_STATEMENTS_H

#include "api/pay.h"

/* Rows in one CSV export (each at most CSV_ROW_BYTES_MAX: the answer fits a response). */
#define STATEMENT_EXPORT_ROWS_MAX 10000
/* Operations listed in one statement or settlement report. */
#define STATEMENT_OPERATIONS_MAX 10000
/* Operations a settlement report reads to add up its period (all kinds and statuses). */
#define REPORT_SCAN_MAX 100000
/* Journal entries of one account read for a statement (the whole history; see above). */
#define STATEMENT_ENTRIES_MAX 2000000

enum http_action api_me_activity_export(struct http_request *req, struct http_response *resp);
enum http_action api_me_statement(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_activity_export(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_statement(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_payout_report(struct http_request *req, struct http_response *resp);

/*
 * Daily payouts (pay_scheduler.c). Once per period (period_s seconds, aligned to the Unix
 * epoch: daily periods start at 00:00 UTC), and once when it starts, a thread pays out each
 * merchant with payouts_daily set its whole available balance through api_pay_payout. The
 * payout's idempotency key is "payouts-daily:<merchant>:<period number>", so however often a
 * period's run is repeated (a restart, several servers on one database) a merchant is paid at
 * most once per period; a balance that is zero, or a payout that failed, waits for the next
 * period. A run pays at most PAYOUT_MERCHANTS_MAX merchants (in id order) and logs a warning
 * when there may be more. A merchant whose payouts are held (frozen: api/risk_freeze.h; or
 * blocked by a screening hit: api_risk_screening_check) is skipped before any operation is
 * recorded (an info line with its id, counted "held" in the run's line) until the hold is
 * lifted; the next period then pays as usual.
 *
 * api_payouts_schedule_start starts the thread (api->payments, api->gateway and the writer
 * must be running); one scheduler per process. api_payouts_schedule_stop wakes and joins it
 * (it finishes the merchant it is paying, then stops) and may be called again or without a
 * start. Both are for the thread that runs `serve`.
 */
#define PAYOUT_MERCHANTS_MAX 1000
CF_WARN_UNUSED enum cf_err api_payouts_schedule_start(struct api *api, int64_t period_s);
void api_payouts_schedule_stop(struct api *api);

#endif
