/*
 * Helpers shared by the two front ends that fill a struct sf_config: the
 * command line (options.c) and the config file (config.c), so a value
 * means the same thing in both and is checked by the same code.
 */
#ifndef SOCKFWD_CONFIG_PRIV_H
#define SOCKFWD_CONFIG_PRIV_H

#include <stddef.h>

#include "sockfwd/config.h"

/* Durations past this are -ERANGE: a year, in milliseconds. */
#define SF_DURATION_MAX_MS (365ull * 24 * 3600 * 1000)

/* enum sf_balance for "roundrobin" ..., or -EINVAL. */
int sf_balance_parse(const char *s);
/* enum sf_pp for "v1", "v2" or "none", or -EINVAL. */
int sf_pp_parse(const char *s);

/*
 * Append the size-byte item elem to the malloc'd array at *(T **)arrp
 * holding *n items; the capacity doubles at each power of two, so n
 * appends cost O(n). Returns 0, or -ENOMEM with the array unchanged.
 */
int sf_array_push(void *arrp, size_t *n, size_t size, const void *elem);

/*
 * Parse the CIDR s with sf_cidr_parse and append it to p's allow list
 * (deny 0) or deny list (deny 1). Returns 0, -EINVAL with a message in
 * err, or -ENOMEM.
 */
int sf_policy_add_cidr(struct sf_policy *p, int deny, const char *s, char *err, size_t errlen);

/* Free p's allow and deny arrays and empty them; other fields stay. */
void sf_policy_clear(struct sf_policy *p);

#endif
