/* json.c - strict decoding of request bodies and query parameters; see api.h. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/ids.h"
#include "core/limits.h"

/* Nesting depth of JSON text, counting only brackets outside strings. */
static size_t json_depth(const char *s, size_t len)
{
    size_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        }
    }
    return max;
}

enum cf_err api_json_object(struct http_request *req, json_t **out, const char **detail_out)
{
    *detail_out = NULL;
    if (req->body_len == 0) {
        *detail_out = "request body is empty";
        return CF_ERR_INVALID_JSON;
    }
    if (json_depth(req->body, req->body_len) > JSON_DEPTH_MAX)
        return CF_ERR_JSON_TOO_DEEP;
    json_error_t e;
    json_t *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    if (root == NULL) {
        char *d = arena_alloc(req->arena, 200);
        if (d != NULL)
            snprintf(d, 200, "%s at line %d column %d", e.text, e.line, e.column);
        *detail_out = d;
        return strstr(e.text, "too big") != NULL ? CF_ERR_INVALID_AMOUNT : CF_ERR_INVALID_JSON;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *detail_out = "request body must be a json object";
        return CF_ERR_INVALID_JSON;
    }
    *out = root;
    return CF_OK;
}

enum cf_err api_json_fields(json_t *obj, const char *const *allowed, const char **detail_out)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            *detail_out = key; /* lives as long as obj */
            return CF_ERR_UNKNOWN_FIELD;
        }
    }
    return CF_OK;
}

enum cf_err api_json_string(json_t *obj, const char *key, bool required, size_t bytes_max,
                            const char **out, size_t *len_out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return required ? CF_ERR_MISSING_FIELD : CF_OK;
    if (!json_is_string(v))
        return CF_ERR_INVALID_FIELD;
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len > bytes_max || memchr(s, '\0', len) != NULL)
        return CF_ERR_INVALID_FIELD;
    *out = s;
    if (len_out != NULL)
        *len_out = len;
    return CF_OK;
}

enum cf_err api_json_bool(json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return CF_OK;
    if (!json_is_boolean(v))
        return CF_ERR_INVALID_FIELD;
    *out = json_is_true(v);
    return CF_OK;
}

enum cf_err api_json_int(json_t *obj, const char *key, bool required, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return required ? CF_ERR_MISSING_FIELD : CF_OK;
    if (!json_is_integer(v))
        return CF_ERR_INVALID_FIELD;
    *out = (int64_t)json_integer_value(v);
    return CF_OK;
}

enum cf_err api_json_metadata(json_t *obj, struct arena *arena, const char **out, size_t *len_out)
{
    json_t *v = json_object_get(obj, "metadata");
    if (v == NULL || json_is_null(v))
        return CF_OK;
    if (!json_is_object(v))
        return CF_ERR_INVALID_FIELD;
    char tmp[LEDGER_METADATA_BYTES_MAX + 1];
    size_t n = json_dumpb(v, tmp, sizeof(tmp), JSON_COMPACT | JSON_SORT_KEYS);
    if (n == 0 || n > LEDGER_METADATA_BYTES_MAX)
        return CF_ERR_INVALID_FIELD;
    char *copy = arena_strndup(arena, tmp, n);
    if (copy == NULL)
        return CF_ERR_NOMEM;
    *out = copy;
    *len_out = n;
    return CF_OK;
}

enum cf_err api_json_id(json_t *obj, const char *key, const char *prefix, uint64_t *out)
{
    const char *s = NULL;
    size_t len = 0;
    enum cf_err err = api_json_string(obj, key, true, ID_TEXT_BYTES_MAX, &s, &len);
    if (err != CF_OK)
        return err;
    return id_parse(prefix, s, len, out);
}

static bool digits_only(const char *s)
{
    if (*s == '\0' ||
        strlen(s) > 9) /* 9 digits cannot overflow long; PAGE_SIZE_MAX bounds the value */
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

enum cf_err api_page_params(struct http_request *req, size_t *limit_out, uint64_t *cursor_out,
                            bool *has_cursor_out)
{
    const char *limit = http_request_query(req, "limit");
    const char *cursor = http_request_query(req, "cursor");
    size_t n = PAGE_SIZE_DEFAULT;
    if (limit != NULL) {
        if (!digits_only(limit))
            return CF_ERR_INVALID_PAGE_SIZE;
        long v = strtol(limit, NULL, 10);
        if (v < 1 || v > PAGE_SIZE_MAX)
            return CF_ERR_INVALID_PAGE_SIZE;
        n = (size_t)v;
    }
    uint64_t c = 0;
    if (cursor != NULL && cursor_parse(cursor, strlen(cursor), &c) != CF_OK)
        return CF_ERR_INVALID_CURSOR;
    *limit_out = n;
    *cursor_out = c;
    *has_cursor_out = cursor != NULL;
    return CF_OK;
}

const char *api_detail_keep(struct http_request *req, const char *detail)
{
    return detail != NULL ? arena_strndup(req->arena, detail, strlen(detail)) : NULL;
}
