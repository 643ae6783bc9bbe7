build-dev/src/core/drain.o: src/core/drain.c include/sockfwd/drain.h \
 include/sockfwd/log.h include/sockfwd/rule.h include/sockfwd/acl.h \
 include/sockfwd/addr.h include/sockfwd/config.h include/sockfwd/io.h \
 include/sockfwd/timer.h include/sockfwd/worker.h include/sockfwd/rule.h
include/sockfwd/drain.h:
include/sockfwd/log.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/worker.h:
include/sockfwd/rule.h:
