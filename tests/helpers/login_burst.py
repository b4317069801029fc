"""A login attack from its own process: N parallel wrong-password logins, once or for a while.

Run as `python -m tests.helpers.login_burst URL --parallel 150 [--seconds S] [--name NAME] [--spoof]`;
prints one JSON line: {"statuses": {"400": n, "429": m, ...}, "attempts": total}. With --seconds each of
the N workers keeps trying until the time is up; without, each tries once. --name fixes the user name
(else each worker has its own); --spoof sends a random X-Forwarded-For with every attempt.
Its own process, so the attack's client does not share the served app's interpreter (and GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import time

import httpx


async def attack(url: str, parallel: int, seconds: float, name: str | None, spoof: bool) -> dict[str, int]:
    statuses: collections.Counter[str] = collections.Counter()
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(index: int) -> None:
            while True:
                headers = {"X-Forwarded-For": f"10.{random.randrange(256)}.0.{index % 250}"} if spoof else {}
                user = name or f"guess-{index}"
                reply = await client.post(
                    "/login", data={"username": user, "password": "wrong-password"}, headers=headers
                )
                statuses[str(reply.status_code)] += 1
                if time.monotonic() >= deadline:
                    return
                if reply.status_code == 429:
                    await asyncio.sleep(0.02)  # an attacker retries at once; a little pause spares our CPUs

        await asyncio.gather(*(worker(i) for i in range(parallel)))
    return dict(statuses)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--parallel", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--name")
    parser.add_argument("--spoof", action="store_true")
    args = parser.parse_args()
    found = asyncio.run(attack(args.url, args.parallel, args.seconds, args.name, args.spoof))
    print(json.dumps({"statuses": found, "attempts": sum(found.values())}), flush=True)


if __name__ == "__main__":
    main()
