build-dev/src/engine/naive.o: src/engine/naive.c include/sockfwd/conn.h \
 include/sockfwd/addr.h include/sockfwd/rule.h include/sockfwd/acl.h \
 include/sockfwd/config.h include/sockfwd/io.h include/sockfwd/timer.h \
 include/sockfwd/stats.h include/sockfwd/worker.h \
 include/sockfwd/engine.h include/sockfwd/log.h include/sockfwd/net.h \
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
include/sockfwd/engine.h:
include/sockfwd/log.h:
include/sockfwd/net.h:
include/sockfwd/worker.h:
