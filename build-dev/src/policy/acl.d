build-dev/src/policy/acl.o: src/policy/acl.c include/sockfwd/acl.h
include/sockfwd/acl.h:
