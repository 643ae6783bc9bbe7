"""The sockfwd bench suite's modules; bench/run.py is the command.

params: profiles, fixed parameters, CPU placement.  procs: the bench lock,
/proc accounting (RSS peaks too), ports, starting and stopping processes.
workloads: the workloads and the curves' points.  forwarders: the
forwarders measured (1 or 2 workers) and the sfload server.  measure: one
run of one workload against one forwarder, with its background client.
summary, targets, report: medians, the issues' targets, table.md, CSV,
chart.  curves, report_curves: what each curve reports, its medians, bends
and targets; its table section, curves.csv, curve_*.png.
"""
