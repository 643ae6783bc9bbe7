/*
 * Fault hooks for the io_uring engine. io_uring moves bytes without libc,
 * so the preloaded test shim (tests/fault/fault.c) that fails accept4,
 * recv or splice cannot reach it; the engine asks these hooks instead.
 * Nothing in sockfwd defines them: the references are weak, resolve to
 * NULL in production, and cost one load and a branch per SQE or CQE.
 * A preloaded library that defines them is found by the dynamic linker.
 */
#ifndef SOCKFWD_FAULT_H
#define SOCKFWD_FAULT_H

/* The completions a test may fail, in the order of the shim's names. */
enum sf_fault_cqe {
	SF_FAULT_CQE_CONNECT, /* the upstream connect's poll */
	SF_FAULT_CQE_RECV,    /* one multishot receive completion */
	SF_FAULT_CQE_SEND,
};

/* Nonzero: act as though the submission queue were full even after a submit. */
int sf_fault_sqe(void) __attribute__((weak));

/* The result a completion of kind `kind` must be seen with: res, or -errno. */
int sf_fault_cqe(int kind, int res) __attribute__((weak));

#endif
