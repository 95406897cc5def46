/*
 * csv.h - the CSV text the API answers with (history exports, suspicious-activity reports):
 * one field escaped, and the 200 answer that carries a built body.
 *
 * Fields follow RFC 4180 (a field holding a comma, a quote or a line break is quoted, a quote
 * doubled), and a field that a spreadsheet would evaluate as a formula (its first character
 * one of = + - @ tab CR) gets an apostrophe first, so an exported name or note never runs as a
 * formula. Appends go through struct buf: an overflow is seen by buf_ok() once at the end.
 * Callable from any thread; nothing here keeps state.
 */
#ifndef COFFER_API_CSV_H
#define COFFER_API_CSV_H

#include "core/buf.h"
#include "http/http.h"

/* Appends s (NUL-terminated) to b as one escaped field, without a separator. */
void api_csv_text(struct buf *b, const char *s);

/* Answers 200 with b's bytes as "text/csv; charset=utf-8". b's data must outlive the response
 * (the request arena). */
void api_csv_reply(struct http_response *resp, const struct buf *b);

#endif
