/* tap.h — the Test Anything Protocol helper our C tests use (meson reads it: protocol 'tap').
 *
 *   plan(3);
 *   ok(x > 0, "x is positive");
 *   is_int(n, 4, "four elements");
 *   is_close(v, 0.5, 1e-6, "value");        // |got - want| <= tol * max(1, |want|)
 *   return done();                          // exit status 1 when any test failed
 *
 * A failure prints where it happened and the values as "# " diagnostics. */
#ifndef LUMEN_TAP_H
#define LUMEN_TAP_H

#include <stdbool.h>
#include <stdint.h>

void plan(int n);              /* announce n tests; use plan_auto() + done() when not known */
void plan_auto(void);
bool ok_at(bool cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool is_int_at(int64_t got, int64_t want, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool is_close_at(double got, double want, double tol, const char *file, int line,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
bool is_str_at(const char *got, const char *want, const char *file, int line, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));
/* Passes when haystack contains needle: for error messages. */
bool has_str_at(const char *haystack, const char *needle, const char *file, int line,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void skip(const char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int done(void);                /* prints the plan if automatic; returns the exit status */

#define ok(cond, ...) ok_at((cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) is_int_at((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_close(got, want, tol, ...) is_close_at((got), (want), (tol), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) is_str_at((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define has_str(got, want, ...) has_str_at((got), (want), __FILE__, __LINE__, __VA_ARGS__)

#endif
