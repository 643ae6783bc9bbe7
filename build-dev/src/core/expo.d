build-dev/src/core/expo.o: src/core/expo.c include/sockfwd/expo.h
include/sockfwd/expo.h:
