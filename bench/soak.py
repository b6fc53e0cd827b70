"""Chaos soak (issue 10): many students, real bot processes, and everything going wrong.

~2,000 student messages over a few minutes across ~200 Slack threads, sent to the real
``python -m bot`` (two processes on PostgreSQL, or one on SQLite) through the fake Slack
and model service (tests/fakes), while:

- 10 % of deliveries arrive twice (Slack's retry with ``X-Slack-Retry-Num``, at once or
  seconds later, half of them to the other process); a delivery answered with a non-2xx,
  or not at all within 3 s, is redelivered up to 3 times (the waits compressed);
- a tenth of the steps are bursts of 3 messages in one thread, a tenth quizzes answered
  by button or (half of them) with a free answer in the modal;
- Slack answers 429 now and then; the model service answers 500/502/503, is slow, breaks
  a stream half-way or takes longer than the bot's run timeout;
- a process is SIGKILLed and restarted every ~30 s; PostgreSQL is cut off once (through
  a TCP proxy: the shared server stays up).

At the end it counts, from the fakes' records: messages answered once, twice, lost, or
answered by a failure notice ("… try again"), quiz answers reaching the model once as
``display_quiz`` output, and turns still unfinished. Numbers are printed, never asserted.

    .venv/bin/python -m bench.soak [--database-url postgresql://…|sqlite] [--turns 2000]
        [--threads 200] [--minutes 5] [--processes N] [--seed 1] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.soak_students import Sent, Student, Tokens, plan_steps
from bench.soak_tally import report, tally, unfinished_turns
from bench.soak_world import DatabasePlug, Deployment, Slack, SoakModel
from tests.e2e.tcp_proxy import TcpProxy
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, message_text

SLACK_LIMITED = (
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "assistant.threads.setStatus",
)


class Chaos:
    """The faults, injected on a timer while the students work."""

    def __init__(
        self,
        args: argparse.Namespace,
        rng: random.Random,
        deployment: Deployment,
        slack: FakeSlack,
        openai: FakeOpenAI,
        plug: DatabasePlug,
    ) -> None:
        self.args = args
        self.rng = rng
        self.deployment = deployment
        self.slack = slack
        self.openai = openai
        self.plug = plug
        self.injected: Counter[str] = Counter()
        # Faults come at a pace tied to the students' (seconds per message on average).
        self.per_message = args.minutes * 60 / args.turns

    async def run(self, started: float) -> None:
        await asyncio.gather(
            self._kills(), self._slack_429s(), self._model_errors(), self._outage(started)
        )

    async def _kills(self) -> None:
        slot = 0
        while True:
            await asyncio.sleep(self.rng.uniform(25.0, 35.0))
            await self.deployment.kill_and_restart(slot)
            slot = (slot + 1) % self.deployment.processes

    async def _slack_429s(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * 5 * self.per_message)
            method = self.rng.choice(SLACK_LIMITED)
            if not self.slack.faults_pending(method):  # the next call of it, not a backlog
                self.slack.rate_limit_next(method, retry_after=1)
                self.injected["Slack 429"] += 1

    async def _model_errors(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * 15 * self.per_message)
            if self.openai.faults_pending("/responses"):
                continue  # faults hit the next requests, not a backlog
            if self.rng.random() < 0.25:
                self.openai.hang_next("/responses", self.rng.uniform(5.0, 15.0))
                self.injected["model request slow (5-15 s)"] += 1
            else:
                count = self.rng.choice([1, 1, 2, 4])
                status = self.rng.choice([500, 500, 502, 503])
                self.openai.fail_next("/responses", status=status, count=count, method="POST")
                self.injected["model 5xx"] += count

    async def _outage(self, started: float) -> None:
        if self.plug.proxy is None:
            return
        at = started + 0.4 * self.args.minutes * 60
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        await self.plug.outage(self.args.db_outage)


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    logs = Path(args.logs or tempfile.mkdtemp(prefix="tutorbot-soak-"))
    logs.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before anything runs)
    slack, openai = FakeSlack(), FakeOpenAI()
    await slack.start()
    await openai.start()
    model = SoakModel(random.Random(args.seed + 1))
    openai.model.default = model
    postgres = args.database_url.startswith("postgres")
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    proxy: TcpProxy | None = None
    if postgres:
        admin = await asyncpg.connect(args.database_url)
        await admin.execute(f"CREATE SCHEMA {schema}")
        # The bots reach the server through a proxy the soak can cut.
        given = urlsplit(args.database_url)
        proxy = TcpProxy(given.hostname or "127.0.0.1", given.port or 5432)
        await proxy.start()
        userinfo = given.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
        database_url = urlunsplit(given._replace(netloc=netloc, query=f"search_path={schema}"))
    else:
        database_url = f"sqlite:///{logs / 'soak.db'}"
    processes = args.processes or (2 if postgres else 1)
    deployment = Deployment(logs, slack, openai, database_url, processes, rng)
    delivery = Slack(deployment, random.Random(args.seed + 2), duplicates=0.1)
    plug = DatabasePlug(proxy)
    chaos = Chaos(args, random.Random(args.seed + 3), deployment, slack, openai, plug)
    sent: list[Sent] = []
    print(
        f"soak: {args.turns} messages in {args.threads} threads over ~{args.minutes} min, "
        f"{processes} process(es) on {'PostgreSQL' if postgres else 'SQLite'}, "
        f"{os.cpu_count()} cores; bot logs in {logs}",
        flush=True,
    )
    try:
        await deployment.start_all()
        tokens = Tokens()
        per_thread = max(1, args.turns // args.threads)
        plans = [plan_steps(rng, per_thread) for _ in range(args.threads)]
        steps = sum(len(p) for p in plans) / len(plans)
        think = max(0.5, args.minutes * 60 / steps - 3.0)
        students = [
            Student(
                i, delivery, slack, tokens, random.Random(args.seed * 1000 + i), plan, think, sent
            )
            for i, plan in enumerate(plans)
        ]
        started = time.monotonic()
        chaos_task = asyncio.create_task(chaos.run(started))
        progress = asyncio.create_task(_progress(started, sent, deployment))
        await asyncio.gather(*(s.run() for s in students))
        chaos_task.cancel()
        progress.cancel()
        await asyncio.gather(chaos_task, progress, return_exceptions=True)
        if proxy is not None:
            proxy.restore()
        elapsed = time.monotonic() - started
        await delivery.drain()
        settled = await _settle(slack, deployment)
        result = tally(slack, openai, sent)
        result.unfinished_turns = await unfinished_turns(
            f"{args.database_url}?search_path={schema}" if postgres else database_url
        )
        d = delivery.stats
        print(
            f"ran {elapsed:.0f} s ({len(sent)} messages); settled: {'yes' if settled else 'NO'}; "
            f"kills {deployment.kills} (restarts that failed and were tried again: "
            f"{deployment.failed_starts}), database outages {plug.outages or 'none'}"
        )
        print(
            f"  deliveries {d.deliveries}: attempts {d.attempts}, refused (non-2xx) {d.refused}, "
            f"no answer {d.no_answer}, Slack retries {d.redelivered}, duplicates sent "
            f"{d.duplicates}, given up {d.given_up}; clicks/submissions {d.interactions} "
            f"({d.interaction_failures} failed and were repeated by the student)"
        )
        m = model.stats
        print(
            "  injected: "
            + ", ".join(f"{k} {v}" for k, v in sorted(chaos.injected.items()))
            + f", model streams broken {m.stream_errors}, model replies slower than the run "
            f"timeout {m.too_slow}, long streamed answers {m.long_streams}"
        )
        report(result)
        await asyncio.to_thread(_write_problems, logs, slack, result.problems, model.journal)
        errors = sum(i.bot.log.count("Traceback") for i in deployment.history)
        print(f"  tracebacks in the bot logs: {errors}")
    finally:
        await deployment.stop()
        for incarnation in deployment.history:
            await incarnation.bot.kill()
        if proxy is not None:
            await proxy.stop()
            if not args.keep_schema:
                await admin.execute(f"DROP SCHEMA {schema} CASCADE")
            await admin.close()
        await openai.stop()
        await slack.stop()


def _write_problems(logs: Path, slack: FakeSlack, problems: list[Sent], journal: list[str]) -> None:
    """The threads of messages lost or answered twice, as Slack shows them, and what the
    model was asked, for a look into the bot logs."""
    (logs / "model.log").write_text("\n".join(journal) + "\n")
    lines = []
    for s in problems:
        lines.append(f"== {s.token} ({s.kind}) {s.channel} thread {s.thread_ts} ts {s.ts}")
        for m in slack.thread(s.channel, s.thread_ts):
            who = "bot" if m.get("bot_id") else m.get("user")
            text = message_text(m).replace("\n", " ")
            lines.append(f"  {m['ts']} {who}: {text[:160]}")
    (logs / "problems.txt").write_text("\n".join(lines) + "\n")


async def _progress(started: float, sent: list[Sent], deployment: Deployment) -> None:
    while True:
        await asyncio.sleep(30)
        print(
            f"  … {time.monotonic() - started:.0f} s: {len(sent)} messages sent, "
            f"{deployment.kills} kills",
            flush=True,
        )


async def _settle(slack: FakeSlack, deployment: Deployment, timeout: float = 120.0) -> bool:
    """Until Slack saw no call for 5 s and every process is idle (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = len(slack.calls)
        await asyncio.sleep(5.0)
        if len(slack.calls) == calls and await deployment.idle(5.0):
            return True
    return False


def main() -> None:
    # A process killed mid-request makes the fakes' server log a traceback: expected here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="sqlite", help="postgresql://… or sqlite")
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--processes", type=int, default=None, help="default: 2 on PostgreSQL, 1 on SQLite"
    )
    parser.add_argument(
        "--db-outage", type=float, default=20.0, help="seconds PostgreSQL is cut off"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--logs", default=None, help="where the bot logs go (default: a new temp dir)"
    )
    parser.add_argument("--keep-schema", action="store_true", help="keep the PostgreSQL schema")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
