"""The swarm: who to ask for which chunk, and the machinery that asks.

Holds the sans-I/O scheduler (piece picking, source choice, end-game, bans),
the asyncio download engine that drives it over HTTP, peer exchange,
contribution accounting with upload scheduling, and the discrete-event
simulator that drives the very same scheduler in virtual time.
"""
