"""WebSocket client for sluice's end-to-end tests.

usage: ws_client.py URL SIZE

Connects to URL, sends a text message and a SIZE-byte random binary message,
checks both echoes, closes with 1000, and prints one JSON object:
  {"ok": true, "status": 101, "size": N, "equal": true, "sent_sha256": ...,
   "received_sha256": ..., "text_equal": true, "close_code": 1000}
or, when the handshake is refused, {"ok": false, "status": <HTTP status>},
or on any other failure {"ok": false, "error": "..."}.
"""

import asyncio
import hashlib
import inspect
import json
import os
import sys

import websockets


def connect(url):
    options = dict(max_size=None, compression=None, ping_interval=None, open_timeout=20, close_timeout=20)
    # Newer versions read HTTP(S)_PROXY from the environment; talk to sluice directly.
    if "proxy" in inspect.signature(websockets.connect).parameters:
        options["proxy"] = None
    return websockets.connect(url, **options)


def refused_status(error):
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(error, "status_code", None)
    return status


async def run(url, size):
    try:
        ws = await connect(url)
    except websockets.exceptions.InvalidHandshake as e:
        return {"ok": False, "status": refused_status(e), "error": f"{type(e).__name__}: {e}"}
    await ws.send("hello through sluice")
    text = await ws.recv()
    payload = os.urandom(size)
    await ws.send(payload)
    echoed = await ws.recv()
    await ws.close(1000)
    sent = hashlib.sha256(payload).hexdigest()
    received = hashlib.sha256(echoed if isinstance(echoed, bytes) else echoed.encode()).hexdigest()
    return {
        "ok": True,
        "status": 101,
        "size": len(echoed),
        "binary": isinstance(echoed, bytes),
        "equal": echoed == payload,
        "sent_sha256": sent,
        "received_sha256": received,
        "text_equal": text == "hello through sluice",
        "close_code": ws.close_code,
    }


def main():
    url, size = sys.argv[1], int(sys.argv[2])
    try:
        result = asyncio.run(asyncio.wait_for(run(url, size), timeout=120))
    except Exception as e:  # reported to the Rust test, which prints it
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
