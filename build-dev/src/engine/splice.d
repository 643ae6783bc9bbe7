build-dev/src/engine/splice.o: src/engine/splice.c src/event/reactor.h \
 include/sockfwd/buf.h include/sockfwd/conn.h include/sockfwd/addr.h \
 include/sockfwd/rule.h include/sockfwd/acl.h include/sockfwd/config.h \
 include/sockfwd/io.h include/sockfwd/timer.h include/sockfwd/stats.h \
 include/sockfwd/worker.h include/sockfwd/io.h include/sockfwd/engine.h \
 include/sockfwd/pipepool.h include/sockfwd/worker.h
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
include/sockfwd/engine.h:
include/sockfwd/pipepool.h:
include/sockfwd/worker.h:
