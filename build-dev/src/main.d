build-dev/src/main.o: src/main.c include/sockfwd/config.h \
 include/sockfwd/acl.h include/sockfwd/addr.h include/sockfwd/drain.h \
 include/sockfwd/engine.h include/sockfwd/log.h include/sockfwd/metrics.h \
 include/sockfwd/config.h include/sockfwd/rule.h include/sockfwd/io.h \
 include/sockfwd/timer.h include/sockfwd/options.h include/sockfwd/priv.h \
 include/sockfwd/rule.h include/sockfwd/systemd.h include/sockfwd/stats.h \
 include/sockfwd/worker.h
include/sockfwd/config.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/drain.h:
include/sockfwd/engine.h:
include/sockfwd/log.h:
include/sockfwd/metrics.h:
include/sockfwd/config.h:
include/sockfwd/rule.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/options.h:
include/sockfwd/priv.h:
include/sockfwd/rule.h:
include/sockfwd/systemd.h:
include/sockfwd/stats.h:
include/sockfwd/worker.h:
