build-dev/src/core/worker.o: src/core/worker.c include/sockfwd/engine.h \
 include/sockfwd/log.h include/sockfwd/worker.h include/sockfwd/rule.h \
 include/sockfwd/acl.h include/sockfwd/addr.h include/sockfwd/config.h \
 include/sockfwd/io.h include/sockfwd/timer.h
include/sockfwd/engine.h:
include/sockfwd/log.h:
include/sockfwd/worker.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
