"""`make bench`: cold start, webhook throughput, sender cost, size, memory and money (issue 6).

Everything runs on 127.0.0.1: DynamoDB and Secrets Manager are moto behind a counting, latency-adding
proxy (ddb_server.py); Ocelot is a local stub (ocelot_stub.py). See docs/performance.md.
"""
