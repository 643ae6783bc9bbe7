build-dev/src/core/timer.o: src/core/timer.c include/sockfwd/timer.h
include/sockfwd/timer.h:
