#!/usr/bin/env python3
"""Validation, run by hand once (docs/testing.md): the soak's reset check
against socat as the forwarder, which turns an upstream reset into a FIN.
Every upstream_reset check must FAIL here; sockfwd passes them."""
import sys, time, random, subprocess
sys.dont_write_bytecode = True
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import soak
class A: pass
a=A(); a.sockfwd='build/sockfwd'; a.out='build/soak-socat'; a.break_mode=None
ctx=soak.Ctx(a); ctx.start_servers()
ps=[]
def socat(name, up, extra=[]):
    p=soak.free_port(); ctx.ports[name]=p
    ps.append(subprocess.Popen(['socat']+extra+['TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr'%p,'TCP:127.0.0.1:%d'%up]))
socat('rst', ctx.servers['rst'].port)
socat('echo', ctx.servers['echo'].port)  # bulk echo: socat passes the data checks
time.sleep(0.5)
rnd=random.Random(3)
for i in range(10): soak.sc_rst(ctx, rnd)
for i in range(10): soak.sc_bulk(ctx, rnd)
print('passed', ctx.chk.passed)
print('failed', ctx.chk.failed)
print('validation %s: socat must fail every upstream_reset check' % ('ok' if ctx.chk.failed['reset'] == 10 else 'FAILED'))
for p in ps: p.kill()
soak.kill_children()
