"""Benchmark: the bot under load, as deployed (``python -m bot`` in its own process).

The fake Slack and OpenAI servers (tests/fakes) run in this process; signed Events API
requests arrive in waves; numbers are printed, nothing is asserted. Both processes share
the machine's cores. Two scenarios:

``burst`` (default): N conversations started at once against a model with a fixed latency.
Prints the Slack ack latency, how long until every answer was in Slack (as a multiple of the
model's latency), the bot's CPU time per turn, model-service requests and Slack Web API
calls per turn, and the bot's peak memory.

``stream``: N answers the model takes seconds to write, at once. Prints how long after the
model's first token the first words of each answer were visible in Slack.

    .venv/bin/python -m bench.load [--scenario burst|stream] [--threads 1000]
        [--per-thread 1] [--latency 1.0] [--runtime responses|assistants|chat]
        [--database-url postgresql://…]   (default: a fresh SQLite file)
        [--slack-limits]                  (Slack's tier limits on, as in a real workspace)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.bot_process import BotProcess
from tests.fakes.openai_model import ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces) start with the state (field 3);
    # utime and stime are fields 14 and 15, in clock ticks.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def settled(slack: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.bot_messages(channel, thread_ts)
        if m["ts"] != thread_ts
        and not slack.is_streaming(channel, m["ts"])
        and message_text(m).strip()
    ]


async def run(args: argparse.Namespace) -> None:
    slack, openai = FakeSlack(), FakeOpenAI()
    await slack.start()
    await openai.start()
    if args.slack_limits:
        slack.enforce_rate_limits()
    if args.scenario == "stream":
        text = "Let me work through this carefully. " * 30

        def reply(ctx: ModelContext) -> Reply:
            return Reply(text=text, first_token_latency=args.latency, write_time=4.0)
    else:

        def reply(ctx: ModelContext) -> Reply:
            return Reply(text=f"Echo: {ctx.last_user_text}", latency=args.latency)

    openai.model.default = reply
    settings = {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": openai.base_url,
        "ASSISTANT_RUNTIME": args.runtime,
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "AGENTOPS_API_KEY": "",
        "RUN_TIMEOUT_SECONDS": "120",
    }
    if args.database_url:
        settings["DATABASE_URL"] = args.database_url
    with tempfile.TemporaryDirectory() as tmp:
        bot = BotProcess(Path(tmp), slack, settings)
        await bot.start()
        assert bot.process is not None
        pid = bot.process.pid
        try:
            await measure(args, bot, slack, openai, pid)
        finally:
            if os.environ.get("BENCH_KEEP_LOG"):  # the bot's log, for a look afterwards
                await asyncio.to_thread(Path(os.environ["BENCH_KEEP_LOG"]).write_text, bot.log)
            if bot.process is not None and bot.process.returncode is None:
                await bot.kill()
            await openai.stop()
            await slack.stop()


async def measure(
    args: argparse.Namespace, bot: BotProcess, slack: FakeSlack, openai: FakeOpenAI, pid: int
) -> None:
    # Warm-up: one turn, so connection pools and imports are not billed to the burst.
    warm = app_mention(text="<@UBOT> warm up", channel="CW", ts=next_ts())
    await bot.sender.post_event(warm)
    while not settled(slack, "CW", warm["ts"]):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await bot.wait_idle(30)

    parents = [
        app_mention(
            text=f"<@UBOT> start {i}", channel=f"C{i % 10}", user=f"U{i % 30}", ts=next_ts()
        )
        for i in range(args.threads)
    ]
    waves = [parents] + [
        [
            message(text=f"follow-up {j}", channel=p["channel"], thread_ts=p["ts"], ts=next_ts())
            for p in parents
        ]
        for j in range(args.per_thread - 1)
    ]
    expected = args.threads * args.per_thread
    slack_before, openai_before = len(slack.calls), len(openai.requests)
    profiler = None
    if args.profile:
        # py-spy (pip install py-spy) samples the bot during the burst only.
        profiler = await asyncio.create_subprocess_exec(
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            args.profile,
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)
    cpu_before = cpu_seconds(pid)

    def answered() -> int:
        return sum(len(settled(slack, p["channel"], p["ts"])) for p in parents)

    started = time.monotonic()
    acks: list[float] = []
    failures = 0
    for wave in waves:  # each wave: one message per thread, all at once
        results = await asyncio.gather(*(bot.sender.post_event(e) for e in wave))
        acks += [r.elapsed * 1000 for r in results]
        failures += sum(r.status >= 300 for r in results)
        if len(waves) > 1:
            while answered() < len(acks) and time.monotonic() - started < 600:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    while answered() < expected and time.monotonic() - started < 600:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await bot.wait_idle(60)
    cpu = cpu_seconds(pid) - cpu_before
    if profiler is not None:
        profiler.send_signal(2)
        await profiler.wait()
    slack_calls = [c for c in slack.calls[slack_before:] if c.method != "auth.test"]
    model_requests = len(openai.requests) - openai_before
    done = answered()

    print(
        f"scenario={args.scenario} runtime={args.runtime} conversations={args.threads} "
        f"messages={expected} model latency={args.latency}s "
        f"db={'postgresql' if args.database_url else 'sqlite'} "
        f"slack limits={'on' if args.slack_limits else 'off'} cores={os.cpu_count()}"
    )
    server = await server_acks(bot)
    print(
        f"  acks in the bot (request in -> answer out): p50 {server['p50']} ms, "
        f"p99 {server['p99']} ms; as this one sender sees them (signing and sending "
        f"{len(acks)} at once from one process included): p50 "
        f"{statistics.median(acks):.0f} ms, p99 {pct(acks, 0.99):.0f} ms; non-2xx {failures}"
    )
    one = args.per_thread * (args.latency + (4.0 if args.scenario == "stream" else 0.0))
    print(
        f"  answered {done}/{expected} in {elapsed:.2f} s = {elapsed / one:.1f}× what one "
        f"thread alone needs ({one:.1f} s)"
    )
    print(
        f"  bot CPU {cpu:.2f} s = {cpu / max(done, 1) * 1000:.2f} ms per turn; "
        f"peak RSS {peak_rss_mb(pid):.0f} MB"
    )
    print(
        f"  per turn: {model_requests / max(done, 1):.2f} model-service requests, "
        f"{len(slack_calls) / max(done, 1):.2f} Slack Web API calls "
        f"({', '.join(f'{m} {n}' for m, n in counts(slack_calls))})"
    )
    limited = sum(1 for c in slack_calls if c.status == 429)
    if limited:
        print(f"  Slack 429s: {limited}")
    if args.scenario == "stream":
        first_text_latency(slack, openai, parents, openai_before)
    print(
        f"  protocol violations: {len(openai.violations)}; "
        f"bot start {bot.started_in:.2f} s, SIGTERM -> exit {await bot.stop(timeout=30):.2f} s"
    )


async def server_acks(bot: BotProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/healthz") as resp:
        return dict((await resp.json())["ack_ms"])


def counts(calls: list[Any]) -> list[tuple[str, int]]:
    tally: dict[str, int] = {}
    for call in calls:
        tally[call.method] = tally.get(call.method, 0) + 1
    return sorted(tally.items(), key=lambda kv: -kv[1])


def first_text_latency(
    slack: FakeSlack, openai: FakeOpenAI, parents: list[dict[str, Any]], since: int
) -> None:
    """Per answer: the model's first text delta -> the first Slack call that showed text."""
    first_token: list[float] = []
    for request in openai.requests[since:]:
        for (name, data), at in zip(request.sse, request.sse_times, strict=False):
            kind = name or (data.get("type") if isinstance(data, dict) else "")
            if kind in ("response.output_text.delta", "thread.message.delta"):
                first_token.append(at)
                break
    shown: list[float] = []
    for parent in parents:
        for call in slack.calls:
            args = call.args
            if call.status != 200 or args.get("thread_ts") != parent["ts"]:
                continue
            if call.method in ("chat.startStream", "chat.postMessage") and (
                args.get("markdown_text")
                or any(c.get("type") == "markdown_text" for c in args.get("chunks") or [])
            ):
                shown.append(call.time)
                break
    if not first_token or len(shown) != len(parents):
        print(f"  first text: {len(shown)} of {len(parents)} answers showed text")
        return
    # Answers and model streams pair up by order of arrival closely enough for a spread:
    # both sorted, the n-th first token is compared with the n-th first text.
    delays = [
        max(0.0, s - t) * 1000 for s, t in zip(sorted(shown), sorted(first_token), strict=False)
    ]
    print(
        f"  first text visible after the model's first token: p50 "
        f"{statistics.median(delays):.0f} ms, p99 {pct(delays, 0.99):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="burst", choices=["burst", "stream"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--per-thread", type=int, default=1)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument(
        "--runtime", default="responses", choices=["responses", "assistants", "chat"]
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--slack-limits", action="store_true")
    parser.add_argument("--profile", default=None, help="py-spy raw profile of the burst")
    args = parser.parse_args()
    if args.threads is None:
        args.threads = 100 if args.scenario == "stream" else 1000
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
