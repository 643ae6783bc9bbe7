build-dev/src/core/systemd.o: src/core/systemd.c include/sockfwd/log.h \
 include/sockfwd/rule.h include/sockfwd/acl.h include/sockfwd/addr.h \
 include/sockfwd/config.h include/sockfwd/io.h include/sockfwd/timer.h \
 include/sockfwd/systemd.h
include/sockfwd/log.h:
include/sockfwd/rule.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/config.h:
include/sockfwd/io.h:
include/sockfwd/timer.h:
include/sockfwd/systemd.h:
