build-dev/src/policy/proxy.o: src/policy/proxy.c include/sockfwd/proxy.h \
 include/sockfwd/addr.h
include/sockfwd/proxy.h:
include/sockfwd/addr.h:
