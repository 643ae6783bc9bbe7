build-dev/src/event/rx_buf.o: src/event/rx_buf.c src/event/reactor.h \
 include/sockfwd/buf.h include/sockfwd/conn.h include/sockfwd/addr.h \
 include/sockfwd/rule.h include/sockfwd/acl.h include/sockfwd/config.h \
 include/sockfwd/io.h include/sockfwd/timer.h include/sockfwd/stats.h \
 include/sockfwd/worker.h include/sockfwd/io.h
src/event/reactor.h:
include/sockfwd/buf.h:
include/sockfwd/conn.h:
include/sockfwd/addr.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/stats.h:
include/sockfwd/worker.h:
include/sockfwd/io.h:
