/* qrsvg.c - QR codes drawn as one SVG path over libqrencode; see qrsvg.h. */
#include "crypto/qrsvg.h"

#include <errno.h>
#include <qrencode.h>
#include <stdbool.h>

#define QUIET_MODULES 4
/* QR version 40 is 177 modules wide. */
#define QR_WIDTH_MAX 177

_Static_assert(QRSVG_TEXT_BYTES_MAX <= 2331, "a version 40-M code holds at most 2331 bytes");

static bool module_dark(const QRcode *qr, int x, int y)
{
    return (qr->data[(size_t)y * (size_t)qr->width + (size_t)x] & 1u) != 0;
}

/* One row's dark modules as horizontal runs: each run is a rectangle one module high, drawn
 * in the coordinates of the image (the quiet zone added). */
static void render_row(const QRcode *qr, int y, struct buf *out)
{
    int x = 0;
    while (x < qr->width) {
        if (!module_dark(qr, x, y)) {
            x++;
            continue;
        }
        int start = x;
        while (x < qr->width && module_dark(qr, x, y))
            x++;
        int run = x - start;
        buf_printf(out, "M%d %dh%dv1h-%dz", start + QUIET_MODULES, y + QUIET_MODULES, run, run);
    }
}

static void render_svg(const QRcode *qr, struct buf *out)
{
    int size = qr->width + 2 * QUIET_MODULES;
    buf_printf(out,
               "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
               "shape-rendering=\"crispEdges\">"
               "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
               size, size, size, size);
    for (int y = 0; y < qr->width; y++)
        render_row(qr, y, out);
    buf_puts(out, "\"/></svg>");
}

/* On failure the buffer is put back as it was: its length, its terminator and its flag (which
 * was clear, or the function would not have started). */
static void buf_restore(struct buf *out, size_t len)
{
    out->len = len;
    out->overflow = false;
    if (out->data != NULL)
        out->data[len] = '\0';
}

enum cf_err qrsvg_render(const char *text, size_t len, struct buf *out)
{
    CF_ASSERT(out != NULL && (text != NULL || len == 0));
    if (len == 0 || len > QRSVG_TEXT_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    if (!buf_ok(out))
        return CF_ERR_NOMEM;
    errno = 0;
    QRcode *qr = QRcode_encodeData((int)len, (const unsigned char *)text, 0, QR_ECLEVEL_M);
    if (qr == NULL)
        return errno == ENOMEM ? CF_ERR_NOMEM : CF_ERR_INVALID_FIELD;
    CF_ASSERT(qr->width > 0 && qr->width <= QR_WIDTH_MAX && qr->data != NULL);
    size_t start = out->len;
    render_svg(qr, out);
    QRcode_free(qr);
    if (!buf_ok(out)) {
        buf_restore(out, start);
        return CF_ERR_NOMEM;
    }
    CF_ASSERT(out->len > start && out->data[out->len] == '\0');
    return CF_OK;
}
