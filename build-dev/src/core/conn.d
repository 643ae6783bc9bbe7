build-dev/src/core/conn.o: src/core/conn.c include/sockfwd/conn.h \
 include/sockfwd/addr.h include/sockfwd/rule.h include/sockfwd/acl.h \
 include/sockfwd/config.h include/sockfwd/io.h include/sockfwd/timer.h \
 include/sockfwd/stats.h include/sockfwd/worker.h include/sockfwd/log.h \
 include/sockfwd/net.h include/sockfwd/proxy.h include/sockfwd/stats.h \
 include/sockfwd/worker.h
include/sockfwd/conn.h:
include/sockfwd/addr.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/stats.h:
include/sockfwd/worker.h:
include/sockfwd/log.h:
include/sockfwd/net.h:
include/sockfwd/proxy.h:
include/sockfwd/stats.h:
include/sockfwd/worker.h:
