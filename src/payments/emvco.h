/*
 * emvco.h - the EMVCo merchant-presented-mode (MPM) QR payload: build one for a Coffer merchant,
 * parse and check one a customer scanned.
 *
 * A pure codec: no I/O, no allocation (callers pass every buffer), no clock (time is passed in),
 * no floating point. Safe to call from any thread; it keeps no state (the currency table it
 * reads is fixed after start-up, see money/currency.h).
 *
 * The payload (EMV QRCPS-MPM v1.1) is a run of data objects: a 2-digit id, a 2-digit length and
 * that many characters of value. Lengths count characters, not bytes: every value is printable
 * ASCII (the spec's "ans" set, 0x20-0x7E) except the alternate-language name and city (tag 64,
 * sub-tags 01 and 02), which are UTF-8. The payload opens with "000201" (tag 00), ends with
 * tag 63 "6304" + 4 hex digits of CRC-16/CCITT-FALSE over everything before those 4 digits, and
 * is at most EMVCO_PAYLOAD_BYTES_MAX bytes. Ids 26..51, 62, 64 and 80..99 are templates whose
 * value is again a run of data objects, read with the same checks; the payment-system templates
 * inside tag 62 (sub-tags 50..99) are checked as text only, so input never nests deeper.
 *
 * The codes Coffer makes:
 *   static  (point of initiation "11"): the payer types the amount; no tag 54.
 *   dynamic (point of initiation "12"): tag 54 amount, single use, with a code id; usually an
 *           order reference in tag 62 sub-tag 05.
 * Coffer's merchant account information is one template, tag EMVCO_TAG_COFFER (26):
 *   00 globally unique identifier (EMVCO_GUI_COFFER unless the operator sets another),
 *   01 Coffer merchant id ("mer_..."), 02 code id ("qr_...", optional),
 *   03 expiry as decimal Unix seconds (optional; informative only: the server's record of the
 *      code is authoritative, emvco_expiry_check only saves a round trip).
 *
 * What parse accepts and what it keeps:
 *   - A well-formed code of another scheme (no template with our GUI) parses: gui, merchant_id,
 *     code_id are "" and expires_at_s is 0. The caller refuses it if it needs a Coffer merchant.
 *   - Objects the struct has no field for (other networks' account information 02..51, tip and
 *     convenience fee 55..57, postal code 61, other tag 62 sub-tags, tag 64, RFU ids 65..79,
 *     unreserved templates 80..99) are checked for shape and character set, then dropped: a
 *     rebuilt code carries only what the struct holds.
 *   - Coffer's model is stricter than the spec in two ways: a static code never carries an
 *     amount and a dynamic code always does (and, when it is Coffer's, has a code id); amounts
 *     follow money_parse's grammar (no leading zeros, no trailing '.').
 *   - build emits objects in ascending id order and the amount with all the currency's fraction
 *     digits ("10.50"; without trailing fraction zeros only when that is needed to fit 13
 *     characters), so build(parse(x)) may differ from x in bytes while
 *     parse(build(parse(x))) == parse(x) and build(parse(build(m))) == build(m).
 *
 * Errors: emvco_mpm_parse answers CF_ERR_INVALID_QR for every malformed, tampered or
 * unsupported payload; emvco_mpm_build answers CF_ERR_INVALID_FIELD for a struct it cannot
 * encode; emvco_expiry_check answers CF_ERR_QR_EXPIRED. On failure *detail_out (when detail_out
 * is not NULL) points to a static lower-case sentence naming what is wrong ("crc mismatch",
 * "tag 54 amount malformed"); the caller never frees it. Outputs are untouched on failure.
 */
#ifndef COFFER_PAYMENTS_EMVCO_H
#define COFFER_PAYMENTS_EMVCO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* Bounds set by the specification (they are the format, not a policy, so they live here). */

/* A whole payload, in bytes (the spec bounds it at 512). */
#define EMVCO_PAYLOAD_BYTES_MAX 512
/* The buffer emvco_mpm_build needs: a payload and its NUL. */
#define EMVCO_PAYLOAD_BUF_BYTES (EMVCO_PAYLOAD_BYTES_MAX + 1)
/* A value's length is two decimal digits. */
#define EMVCO_VALUE_CHARS_MAX 99
#define EMVCO_GUI_CHARS_MAX 32
#define EMVCO_MERCHANT_NAME_CHARS_MAX 25
#define EMVCO_MERCHANT_CITY_CHARS_MAX 15
/* Tag 54: "up to 13 characters". */
#define EMVCO_AMOUNT_CHARS_MAX 13
/* Tag 62 sub-tags 01..08 (05 is the reference label). */
#define EMVCO_REFERENCE_CHARS_MAX 25
/* Coffer's own sub-tags: the same bound as the spec's merchant fields, and what the ids need. */
#define EMVCO_MERCHANT_ID_CHARS_MAX 25
#define EMVCO_CODE_ID_CHARS_MAX 25
/* 9999-12-31T23:59:59Z: twelve digits, and past any code's life. */
#define EMVCO_EXPIRES_AT_S_MAX INT64_C(253402300799)

/* Where Coffer's merchant account information template goes, and its default identifier. */
#define EMVCO_TAG_COFFER 26
#define EMVCO_GUI_COFFER "org.coffer"

/* A merchant-presented code as Coffer sees it. Strings are NUL-terminated. */
struct emvco_mpm {
    bool dynamic;                                          /* point of initiation "12", else "11" */
    char mcc[5];                                           /* tag 52: 4 digits (ISO 18245) */
    char currency_numeric[4];                              /* tag 53: 3 digits (ISO 4217, "840") */
    char country[3];                                       /* tag 58: 2 letters A-Z (ISO 3166-1) */
    char merchant_name[EMVCO_MERCHANT_NAME_CHARS_MAX + 1]; /* tag 59 */
    char merchant_city[EMVCO_MERCHANT_CITY_CHARS_MAX + 1]; /* tag 60 */
    char gui[EMVCO_GUI_CHARS_MAX + 1];                     /* tag 26/00; "" when not Coffer's */
    char merchant_id[EMVCO_MERCHANT_ID_CHARS_MAX + 1];     /* tag 26/01; "" when not Coffer's */
    char code_id[EMVCO_CODE_ID_CHARS_MAX + 1];             /* tag 26/02; "" when none */
    int64_t expires_at_s;                                  /* tag 26/03; 0 when none */
    int64_t amount_minor;                                  /* tag 54; 0 when none (static) */
    int amount_scale; /* minor-unit digits of tag 53's currency; -1: look it up */
    char reference[EMVCO_REFERENCE_CHARS_MAX + 1]; /* tag 62/05; "" when none */
};

/* Zeroes *m, sets gui to EMVCO_GUI_COFFER and amount_scale to -1 (look the scale up). */
void emvco_mpm_init(struct emvco_mpm *m);

/*
 * Encodes m into out (at least EMVCO_PAYLOAD_BUF_BYTES bytes, else the call aborts): the
 * payload, NUL-terminated, with its CRC in upper-case hex; *len_out gets its length without the
 * NUL. m->amount_scale is used as given (0..4), or, when -1, looked up from currency_numeric in
 * the currency table.
 *
 * CF_ERR_INVALID_FIELD, with the field named in *detail_out, when m cannot be a Coffer code: a
 * field empty, too long, outside its character set or not NUL-terminated; no merchant id; a
 * static code with an amount; a dynamic code without an amount > 0 or without a code id; an
 * amount longer than 13 characters; a scale unknown (currency not in the table) or outside 0..4;
 * an expiry outside 0..EMVCO_EXPIRES_AT_S_MAX; a template 26 longer than 99 characters.
 * out and *len_out are untouched on failure.
 */
CF_WARN_UNUSED enum cf_err emvco_mpm_build(const struct emvco_mpm *m, char *out, size_t out_bytes,
                                           size_t *len_out, const char **detail_out);

/*
 * Decodes and checks len bytes of payload (no NUL needed; NULL only when len is 0). gui is the
 * identifier of Coffer's template (NULL: EMVCO_GUI_COFFER); it is looked for in every template
 * 26..51 and must appear at most once. amount_scale is the scale of tag 53's currency when the
 * caller knows it (0..4), or -1 to look it up in the currency table (then a code with an amount
 * in a currency the table lacks is refused); any other value aborts. out->amount_scale gets the
 * scale used (-1 only when none was given, none is known and there is no amount).
 *
 * CF_ERR_INVALID_QR, with the reason in *detail_out, for: more than EMVCO_PAYLOAD_BYTES_MAX
 * bytes; an id or length that is not two digits, a length of 00, a value past the end or not
 * UTF-8; a value outside its character set; an id twice in the payload or in one template;
 * tag 00 not first or not "01"; tag 63 missing, not last, not 4 hex digits or not matching
 * (upper- or lower-case hex is accepted); a missing 52, 53, 58, 59, 60 or account information
 * (02..51); a malformed field (tag 54 amount: 1..13 characters, digits and at most one '.', > 0,
 * no more fraction digits than the scale); a template lacking its mandatory sub-tags; and the
 * stricter rules above. *out is untouched on failure.
 */
CF_WARN_UNUSED enum cf_err emvco_mpm_parse(const char *payload, size_t len, const char *gui,
                                           int amount_scale, struct emvco_mpm *out,
                                           const char **detail_out);

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor) of len bytes;
 * "123456789" gives 0x29B1. data may be NULL only when len is 0. */
uint16_t emvco_crc16_compute(const uint8_t *data, size_t len);

/* CF_OK when m has no expiry or now_s is before m->expires_at_s; CF_ERR_QR_EXPIRED from that
 * second on. Only the payload's claim: the server's record of the code decides. */
CF_WARN_UNUSED enum cf_err emvco_expiry_check(const struct emvco_mpm *m, int64_t now_s);

#endif
