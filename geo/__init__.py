"""Mirrors: discovery, GeoIP proximity, probing, health, ranking and fallback.

Plain HTTP mirrors hold every artifact and speak nothing but HTTP. This package
decides which of them to use, in what order, and when to fall back to them; it
never trusts a mirror for content (every chunk is verified by the core).
"""
