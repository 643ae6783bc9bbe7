build-dev/src/core/config.o: src/core/config.c src/core/config_priv.h \
 include/sockfwd/config.h include/sockfwd/acl.h include/sockfwd/addr.h \
 include/sockfwd/engine.h include/sockfwd/log.h include/sockfwd/options.h \
 include/sockfwd/config.h
src/core/config_priv.h:
include/sockfwd/config.h:
include/sockfwd/acl.h:
include/sockfwd/addr.h:
include/sockfwd/engine.h:
include/sockfwd/log.h:
include/sockfwd/options.h:
include/sockfwd/config.h:
