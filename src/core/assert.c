/* assert.c - the failure path of CF_ASSERT: say what broke, then abort. */
#include "core/assert.h"

#include <stdio.h>
#include <stdlib.h>

void cf_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr,
            "{\"level\":\"fatal\",\"msg\":\"assertion failed\",\"cond\":\"%s\","
            "\"file\":\"%s\",\"line\":%d}\n",
            cond, file, line);
    fflush(stderr);
    abort();
}
