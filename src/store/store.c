/* store.c - picks the backend a location names; see store.h. */
#include "store/store.h"

#include <string.h>

#include "core/log.h"

enum cf_err store_open(const struct store_options *opts, struct store **out)
{
    CF_ASSERT(opts != NULL && opts->location != NULL);
    CF_ASSERT(out != NULL);
    if (strncmp(opts->location, "postgres://", 11) == 0 ||
        strncmp(opts->location, "postgresql://", 13) == 0)
        return store_postgres_open(opts, out);
    return store_sqlite_open(opts, out);
}
