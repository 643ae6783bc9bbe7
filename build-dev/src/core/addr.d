build-dev/src/core/addr.o: src/core/addr.c include/sockfwd/addr.h
include/sockfwd/addr.h:
