build-dev/src/engine/buf.o: src/engine/buf.c include/sockfwd/buf.h
include/sockfwd/buf.h:
