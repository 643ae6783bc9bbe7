build-dev/src/core/stats.o: src/core/stats.c include/sockfwd/stats.h \
 include/sockfwd/rule.h include/sockfwd/acl.h include/sockfwd/addr.h \
 include/sockfwd/config.h include/sockfwd/io.h include/sockfwd/timer.h
include/sockfwd/stats.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
