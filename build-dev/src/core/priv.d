build-dev/src/core/priv.o: src/core/priv.c include/sockfwd/priv.h
include/sockfwd/priv.h:
