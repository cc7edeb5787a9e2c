/* asan_limits.h -- for tests of decoders fed lying lengths: under
 * AddressSanitizer any allocation above 256 MiB fails the test (a header
 * claiming billions of entries must be refused before anything is
 * allocated).  Defines RK_ASAN when built with ASan.  Include once, in the
 * test's main file. */
#ifndef RINGKEEP_TESTS_ASAN_LIMITS_H
#define RINGKEEP_TESTS_ASAN_LIMITS_H

#if defined(__SANITIZE_ADDRESS__)
#define RK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RK_ASAN 1
#endif
#endif

#ifdef RK_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "max_allocation_size_mb=256:allocator_may_return_null=0";
}
#endif

#endif
