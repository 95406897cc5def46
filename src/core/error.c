/* error.c - lookups over the error registry in errors.def. */
#include "core/error.h"

#include <string.h>

#include "core/assert.h"

struct err_row {
    int http_status;
    const char *code;
    const char *title;
};

static const struct err_row err_rows[CF_ERR_COUNT_] = {
#define CF_ERROR(e, status, code, title) [CF_ERR_##e] = {status, code, title},
#include "core/errors.def"
#undef CF_ERROR
};

static const struct err_row *err_row_get(enum cf_err err)
{
    if ((unsigned)err >= CF_ERR_COUNT_)
        err = CF_ERR_INTERNAL;
    CF_ASSERT(err_rows[err].code != NULL);
    return &err_rows[err];
}

int cf_err_http_status(enum cf_err err) { return err_row_get(err)->http_status; }
const char *cf_err_code(enum cf_err err) { return err_row_get(err)->code; }
const char *cf_err_title(enum cf_err err) { return err_row_get(err)->title; }

enum cf_err cf_err_from_code(const char *code)
{
    for (int i = 0; i < CF_ERR_COUNT_; i++) {
        if (strcmp(err_rows[i].code, code) == 0)
            return (enum cf_err)i;
    }
    return CF_ERR_COUNT_;
}
