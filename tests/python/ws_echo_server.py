"""WebSocket echo upstream for sluice's end-to-end tests.

usage: ws_echo_server.py [HOST]

Listens on a free port of HOST (default 127.0.0.1), prints {"port": N} on one line, and echoes
every message (text or binary, any size) until stdin closes. Compression and
keep-alive pings are off so the bytes on the wire are the message itself.
"""

import asyncio
import json
import os
import sys
import threading

import websockets


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.exceptions.ConnectionClosed:
        pass


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


async def main():
    async with websockets.serve(
        echo,
        sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1",
        0,
        max_size=None,
        compression=None,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    asyncio.run(main())
