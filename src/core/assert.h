/*
 * assert.h - invariant checks that stay on in every build.
 *
 * CF_ASSERT(cond) aborts the process with the file, line and condition when an invariant is
 * broken. A crash turns a correctness bug into a liveness bug; the database stays atomic because
 * nothing is acknowledged before it is durable. Use it for things that cannot happen when the code
 * is right, never for bad input (that is an error code).
 */
#ifndef COFFER_CORE_ASSERT_H
#define COFFER_CORE_ASSERT_H

_Noreturn void cf_assert_fail(const char *cond, const char *file, int line);

#define CF_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            cf_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

#define CF_WARN_UNUSED __attribute__((warn_unused_result))

#endif
