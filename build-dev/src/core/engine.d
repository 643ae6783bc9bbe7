build-dev/src/core/engine.o: src/core/engine.c include/sockfwd/config.h \
 include/sockfwd/acl.h include/sockfwd/addr.h include/sockfwd/engine.h
include/sockfwd/config.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/engine.h:
