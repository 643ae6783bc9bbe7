build-dev/src/policy/balance.o: src/policy/balance.c \
 include/sockfwd/rule.h include/sockfwd/acl.h include/sockfwd/addr.h \
 include/sockfwd/config.h include/sockfwd/io.h include/sockfwd/timer.h
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
