"""An OpenAI-compatible server that answers at once: the bench fixture for
timing fabula's own work through HTTP (bench/driver.py --http).

    python bench/instant_server.py PORT

POST /v1/chat/completions writes the story an instruct request asks for
without a model: one paragraph per line of the plan ("1. ..."), each the
plan's own sentence (so the card's people, places and required words are
there) followed by filler words up to the requested length, seeded by the
request's seed. GET /v1/models lists one model. HTTP/1.1 with keep-alive,
plain asyncio: no framework, so the server's own cost stays small beside the
client's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from fabula.backends.fake import filler  # noqa: E402

MODEL = "instant"
_ABOUT = re.compile(r"about (\d+) words")
_PLAN_LINE = re.compile(r"^\d+\. (.+)$", re.MULTILINE)


def story(prompt: str, seed: int) -> str:
    rng = random.Random(seed)
    m = _ABOUT.search(prompt)
    target = int(m.group(1)) if m else 300
    notes = _PLAN_LINE.findall(prompt) or ["He waited."]
    per = target / len(notes)
    paragraphs = []
    for note in notes:
        note = note.strip()
        if note[-1:] not in ".!?":
            note += "."
        rest = max(4, int(per) - len(note.split()))
        paragraphs.append(f"{note} {filler(rng, rest)}")
    return "\n\n".join(paragraphs)


def _response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path.endswith("/models"):
                out = _response("200 OK", json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
            elif method == "POST" and path.endswith("/chat/completions"):
                req = json.loads(body)
                text = story(req["messages"][-1]["content"], int(req.get("seed") or 0))
                tokens = round(len(text.split()) / 0.75)
                out = _response(
                    "200 OK",
                    json.dumps(
                        {
                            "id": "instant",
                            "object": "chat.completion",
                            "model": MODEL,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": len(body) // 4, "completion_tokens": tokens, "total_tokens": tokens + len(body) // 4},
                        }
                    ).encode(),
                )
            else:
                out = _response("404 Not Found", b'{"error": "not found"}')
            writer.write(out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
