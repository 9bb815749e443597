"""The chaos run: N messages through the local stack with Ocelot and DynamoDB misbehaving.

    python -m tools.chaos --messages 2000    # `make chaos`; tests/integration/test_chaos.py runs the same
    make chaos N=20000                       # the manual, larger run
    python -m tools.chaos --storage-scope all   # the Sender's DynamoDB writes faulted too (exploratory)

Modules:
- `profile`: what goes wrong (sandbox knobs, webhook and storage faults) and the workload (requests,
  recipients, which route), all derived from a seed;
- `driver`: a client that submits like a real integration (API with retries on 503/409/5xx/202 with
  the same requestId, SQS with a dead-letter redrive), and the storage outages during the run;
- `verify`: the sandbox's record against the whole messages table: figures and pass/fail checks, then
  the operator's reconciliation of the unknown chunks;
- `run`: one run end to end (own stack on free loopback ports, stopped whatever happens), the table,
  and bench/chaos-last.json.

What is guaranteed and what the last runs showed: docs/reliability.md.
"""
