build-dev/src/engine/pipepool.o: src/engine/pipepool.c \
 include/sockfwd/log.h include/sockfwd/pipepool.h
include/sockfwd/log.h:
include/sockfwd/pipepool.h:
