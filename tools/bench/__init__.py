"""`make bench`: cold start, webhook throughput, sender cost, size, memory and money (docs/performance.md).

Everything runs on 127.0.0.1: DynamoDB and Secrets Manager are the local stack's moto, delaying and
metering every request; Ocelot is the local stack's sandbox.
"""
