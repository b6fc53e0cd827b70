"""Benchmark: Slack ack latency and answer throughput under a burst of mentions.

Runs the real bot as ``python -m bot`` (its own process, as deployed) against the fake
Slack and OpenAI servers (tests/fakes, in this process), sends signed Events API requests
in waves and prints numbers; nothing is asserted. Both processes share the machine's cores.

    .venv/bin/python -m bench.load [--threads 50] [--per-thread 4] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.bot_process import BotProcess
from tests.e2e.conftest import PLACEHOLDER
from tests.fakes.openai_model import ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(threads: int, per_thread: int, latency: float, runtime: str) -> None:
    slack, openai = FakeSlack(), FakeOpenAI()
    await slack.start()
    await openai.start()

    def reply(ctx: ModelContext) -> Reply:
        return Reply(text=f"Echo: {ctx.last_user_text}", latency=latency)

    openai.model.default = reply
    with tempfile.TemporaryDirectory() as tmp:
        bot = BotProcess(
            Path(tmp),
            slack,
            {
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": openai.base_url,
                "ASSISTANT_RUNTIME": runtime,
                "LOG_LEVEL": "WARNING",
                "AGENTOPS_API_KEY": "",
            },
        )
        await bot.start()
        try:
            parents = [
                app_mention(text=f"<@UBOT> start {i}", channel=f"C{i % 10}", ts=next_ts())
                for i in range(threads)
            ]
            waves = [parents] + [
                [
                    message(
                        text=f"follow-up {j}", channel=p["channel"], thread_ts=p["ts"], ts=next_ts()
                    )
                    for p in parents
                ]
                for j in range(per_thread - 1)
            ]
            expected = threads * per_thread

            def answered() -> int:
                return sum(
                    1
                    for p in parents
                    for m in slack.bot_messages(p["channel"], p["ts"])
                    if m["ts"] != p["ts"] and not PLACEHOLDER.search(message_text(m))
                )

            started = time.monotonic()
            acks: list[float] = []
            failures = 0
            for wave in waves:  # each wave: one message per thread, all at once
                results = await asyncio.gather(*(bot.sender.post_event(e) for e in wave))
                acks += [r.elapsed * 1000 for r in results]
                failures += sum(r.status >= 300 for r in results)
                await asyncio.sleep(0.1)
            while answered() < expected and time.monotonic() - started < 300:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            print(
                f"runtime={runtime} threads={threads} messages={expected} "
                f"model latency={latency}s (bot in its own process)"
            )
            print(
                f"  acks: p50 {statistics.median(acks):.1f} ms, p95 {pct(acks, 0.95):.1f} ms, "
                f"max {max(acks):.1f} ms, non-2xx {failures}"
            )
            print(
                f"  answered {answered()}/{expected} in {elapsed:.2f} s "
                f"({answered() / elapsed:.1f} answers/s); one thread alone needs "
                f"≥ {per_thread * latency:.1f} s"
            )
            print(
                f"  max concurrent model requests on one thread: "
                f"{max(openai.max_concurrent.values())}, protocol violations: "
                f"{len(openai.violations)}"
            )
            print(f"  bot start {bot.started_in:.2f} s, SIGTERM -> exit {await bot.stop():.2f} s")
        finally:
            if bot.process is not None and bot.process.returncode is None:
                await bot.kill()
            await openai.stop()
            await slack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--per-thread", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--runtime", default="responses", choices=["responses", "assistants"])
    args = parser.parse_args()
    asyncio.run(run(args.threads, args.per_thread, args.latency, args.runtime))


if __name__ == "__main__":
    main()
