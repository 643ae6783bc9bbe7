build-dev/src/core/net.o: src/core/net.c include/sockfwd/net.h \
 include/sockfwd/addr.h
include/sockfwd/net.h:
include/sockfwd/addr.h:
