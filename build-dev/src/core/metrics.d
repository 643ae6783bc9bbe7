build-dev/src/core/metrics.o: src/core/metrics.c include/sockfwd/expo.h \
 include/sockfwd/log.h include/sockfwd/metrics.h include/sockfwd/config.h \
 include/sockfwd/acl.h include/sockfwd/addr.h include/sockfwd/rule.h \
 include/sockfwd/io.h include/sockfwd/timer.h include/sockfwd/net.h \
 include/sockfwd/options.h include/sockfwd/stats.h \
 include/sockfwd/worker.h
include/sockfwd/expo.h:
include/sockfwd/log.h:
include/sockfwd/metrics.h:
include/sockfwd/config.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/rule.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/net.h:
include/sockfwd/options.h:
include/sockfwd/stats.h:
include/sockfwd/worker.h:
