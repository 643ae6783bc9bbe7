build-dev/src/core/log.o: src/core/log.c include/sockfwd/config.h \
 include/sockfwd/acl.h include/sockfwd/addr.h include/sockfwd/log.h
include/sockfwd/config.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/log.h:
