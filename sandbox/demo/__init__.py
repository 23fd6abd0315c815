"""The demo: a hub and four department nodes as separate processes on this machine, over TLS.

``sandbox demo [--state DIR] [--quick]`` (``run_demo``) tells one story, step by step:

1. Four city departments (济南, 青岛, 日照, 德州) get synthetic enterprise registers; the data
   authority makes a CA and a certificate for every party (``sandbox certs``), and each
   department starts its own node (``sandbox node serve``) holding only its city's data; the
   authority starts the hub (``sandbox hub serve``) with a Flower SuperLink.
2. A bank (qilu-credit-bank) asks for DP query access; three departments approve, 德州 approves
   without one column (Amend); the authority issues the signed grant.
3. The bank runs DP queries (values with 95% intervals, epsilon spent, a log entry whose
   inclusion proof it verifies); the column 德州 kept back is refused.
4. A DP training job across the four nodes, over real Flower processes: a SuperLink beside the
   hub (``hub serve --flower``), one SuperNode per dataset on each node's side
   (``node serve --flower-superlink``), their keys registered with the datasets.
5. A request for a purpose a department does not accept is refused, with its reason.
6. The bank spends 日照's budget until the hub refuses: exhausted.
7. 济南 revokes the grant mid-way; the next query is refused.
8. The regulator exports the log over the API and verifies it offline (``sandbox audit verify``).

Everything is left in the state folder (see docs/demo.md); every process the demo starts is
stopped when it ends, fails or is interrupted.
"""

from __future__ import annotations

from sandbox.demo.run import run_demo

__all__ = ["run_demo"]
