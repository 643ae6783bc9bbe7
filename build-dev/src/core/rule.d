build-dev/src/core/rule.o: src/core/rule.c include/sockfwd/log.h \
 include/sockfwd/net.h include/sockfwd/addr.h include/sockfwd/rule.h \
 include/sockfwd/acl.h include/sockfwd/config.h include/sockfwd/io.h \
 include/sockfwd/timer.h include/sockfwd/systemd.h \
 include/sockfwd/stats.h include/sockfwd/rule.h
include/sockfwd/log.h:
include/sockfwd/net.h:
include/sockfwd/addr.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/systemd.h:
include/sockfwd/stats.h:
include/sockfwd/rule.h:
