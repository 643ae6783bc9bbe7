/*
 * Helpers shared by the unit tests.
 */
#ifndef SOCKFWD_TESTS_UNIT_H
#define SOCKFWD_TESTS_UNIT_H

#include <stdarg.h>
#include <string.h>

#include <criterion/criterion.h>

/* err contains one of the NULL-terminated needles, ignoring case. */
static inline int err_mentions(const char *err, ...)
{
	va_list ap;
	const char *needle;
	int found = 0;

	va_start(ap, err);
	while ((needle = va_arg(ap, const char *)) != NULL)
		if (strcasestr(err, needle) != NULL)
			found = 1;
	va_end(ap);
	return found;
}

#define cr_assert_err_mentions(err, ...)                                                           \
	cr_assert(err_mentions((err), __VA_ARGS__, (const char *)NULL),                            \
		  "error message \"%s\" should mention one of: %s", (err), #__VA_ARGS__)

#endif
