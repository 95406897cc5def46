/*
 * qrsvg.h - a QR code as an SVG image (libqrencode), for TOTP enrolment and payment codes.
 *
 * The SVG is self-contained (no scripts, no external references), black modules on white with
 * a 4-module quiet zone, one <path> of unit squares, scaled by viewBox so it is crisp at any
 * size. Error correction level M.
 */
#ifndef COFFER_CRYPTO_QRSVG_H
#define COFFER_CRYPTO_QRSVG_H

#include <stddef.h>

#include "core/assert.h"
#include "core/buf.h"
#include "core/error.h"

/* Text longer than this is refused (a version 40-M code holds 2331 bytes). */
#define QRSVG_TEXT_BYTES_MAX 2048

/* Appends the SVG for text (len bytes, 8-bit mode) to out. CF_ERR_INVALID_FIELD when text is
 * empty or too long; CF_ERR_NOMEM. */
CF_WARN_UNUSED enum cf_err qrsvg_render(const char *text, size_t len, struct buf *out);

#endif
