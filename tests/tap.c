/* tap.c — the TAP helper (see tap.h). */
#include "tap.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int count, failed, planned = -1;

void plan(int n)
{
    planned = n;
    printf("1..%d\n", n);
}

void plan_auto(void) { planned = -1; }

static void report(bool pass, const char *fmt, va_list ap)
{
    count++;
    if (!pass) failed++;
    printf("%s %d - ", pass ? "ok" : "not ok", count);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}

bool ok_at(bool cond, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cond, fmt, ap);
    va_end(ap);
    if (!cond) printf("#   failed at %s:%d\n", file, line);
    return cond;
}

bool is_int_at(int64_t got, int64_t want, const char *file, int line, const char *fmt, ...)
{
    bool pass = got == want;
    va_list ap;
    va_start(ap, fmt);
    report(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#   failed at %s:%d\n#   got:  %lld\n#   want: %lld\n", file, line, (long long)got,
               (long long)want);
    return pass;
}

bool is_close_at(double got, double want, double tol, const char *file, int line, const char *fmt,
                 ...)
{
    bool pass;
    if (isnan(want)) pass = isnan(got);
    else if (isinf(want)) pass = got == want;
    else pass = fabs(got - want) <= tol * fmax(1.0, fabs(want));
    va_list ap;
    va_start(ap, fmt);
    report(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#   failed at %s:%d\n#   got:  %.17g\n#   want: %.17g (tolerance %g)\n", file, line,
               got, want, tol);
    return pass;
}

bool is_str_at(const char *got, const char *want, const char *file, int line, const char *fmt, ...)
{
    bool pass = got && want && strcmp(got, want) == 0;
    va_list ap;
    va_start(ap, fmt);
    report(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#   failed at %s:%d\n#   got:  \"%s\"\n#   want: \"%s\"\n", file, line,
               got ? got : "(null)", want ? want : "(null)");
    return pass;
}

bool has_str_at(const char *haystack, const char *needle, const char *file, int line,
                const char *fmt, ...)
{
    bool pass = haystack && needle && strstr(haystack, needle) != NULL;
    va_list ap;
    va_start(ap, fmt);
    report(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#   failed at %s:%d\n#   in:   \"%s\"\n#   want: \"%s\"\n", file, line,
               haystack ? haystack : "(null)", needle ? needle : "(null)");
    return pass;
}

void skip(const char *reason, const char *fmt, ...)
{
    count++;
    printf("ok %d - ", count);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" # SKIP %s\n", reason);
}

void diag(const char *fmt, ...)
{
    printf("# ");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

int done(void)
{
    if (planned < 0) printf("1..%d\n", count);
    else if (planned != count) {
        printf("# planned %d tests but ran %d\n", planned, count);
        return 1;
    }
    if (failed) printf("# failed %d of %d tests\n", failed, count);
    fflush(stdout);
    return failed ? 1 : 0;
}
