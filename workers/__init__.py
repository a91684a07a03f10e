"""framecrypt.workers: what a crypto worker runs.

The subpackages ``sframe`` (RFC 9605) and ``livekit`` (LiveKit / Jitsi frame
format) are the *pure core*: no asyncio, no zmq, no clocks, no processes.
"""
