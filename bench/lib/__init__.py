"""The sockfwd bench suite's modules; bench/run.py is the command.

params: profiles, fixed parameters, CPU placement.  procs: the bench lock,
/proc accounting, ports, starting and stopping processes.  forwarders: the
forwarders measured and the sfload server.  measure: workloads and one run
of one workload against one forwarder.  report: summary, table.md, CSV,
chart.
"""
