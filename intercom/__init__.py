"""The intercom: live video and two-way audio between the door and the front office (WebRTC).

Runs in its own thread with its own asyncio loop (``engine.MediaEngine``), isolated from
the door: the core never calls into it, and everything that calls it (the panel's
signalling requests) waits with a timeout. A crash, a stuck encoder or a hostile peer
costs at most the live view, never a ring, an approval or a relock.

Nothing is recorded: video and audio only pass through. Who watched and who talked, and
when, is journaled (``live_view_started/ended``, ``talk_started/ended``).

Only this package imports aiortc and PyAV; the controller core imports none of it.
"""
