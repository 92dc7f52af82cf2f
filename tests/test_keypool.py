"""The key pool: health, selection, task affinity in a batch, the `keys` command, and the
public Python API — against the simulator, which enforces per-project quotas and 403s a
file used with a key other than the one that uploaded it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.genai import types

from gs_video_report.config import ApiKey, PoolKey, load_settings, read_keys_file, resolve_keys
from gs_video_report.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    QuotaScope,
    RateLimitError,
    TransientError,
)
from gs_video_report.services.gemini.keypool import KeyPool, NoUsableKey, daily_reset_at
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from tests.conftest import REPO, SAMPLES, make_lectures
from tests.test_batch_runner import record, resume

KEY_A = "AIzaKEY-A-0000000000000000000000000"  # project school
KEY_B = "AIzaKEY-B-1111111111111111111111111"  # project school
KEY_C = "AIzaKEY-C-2222222222222222222222222"  # project home


def pool_keys() -> list[PoolKey]:
    return [
        PoolKey.of(ApiKey(KEY_A, "t"), "a", "school"),
        PoolKey.of(ApiKey(KEY_B, "t"), "b", "school"),
        PoolKey.of(ApiKey(KEY_C, "t"), "c", "home"),
    ]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the pool on its own ---------------------------------------------------------------
def test_auth_error_disables_only_that_key_and_enable_brings_it_back() -> None:
    pool = KeyPool(pool_keys(), clock=Clock())
    a, b, c = pool.keys
    pool.failed(a.fingerprint, AuthError("400 INVALID_ARGUMENT: API key not valid"))
    assert [k.fingerprint for k in pool.usable()] == [b.fingerprint, c.fingerprint]
    assert pool.states[a.fingerprint].disabled == "400 INVALID_ARGUMENT: API key not valid"
    assert pool.states[a.fingerprint].failures == {"AuthError": 1}
    pool.enable(a.fingerprint)
    assert len(pool.usable()) == 3


def test_a_429_cools_down_every_key_of_the_project_and_they_come_back_on_their_own() -> None:
    clock = Clock()
    pool = KeyPool(pool_keys(), clock=clock)
    a, b, c = pool.keys
    pool.failed(a.fingerprint, RateLimitError("429", retry_after=30, quota=QuotaScope.PER_MINUTE))
    assert pool.usable() == [c]  # b shares school's quota
    assert pool.states[b.fingerprint].describe(clock.now) == "cooling down 30s (per-minute quota)"
    clock.now += 31
    assert pool.usable() == [a, b, c]


def test_a_per_day_429_cools_the_project_until_midnight_pacific() -> None:
    clock = Clock(datetime(2026, 11, 22, 15, 0, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp())
    pool = KeyPool(pool_keys(), clock=clock)
    a = pool.keys[0]
    pool.failed(a.fingerprint, RateLimitError("429", quota=QuotaScope.PER_DAY))
    reset = pool.states[a.fingerprint].cooldown_until
    assert reset == daily_reset_at(clock.now) == clock.now + 9 * 3600
    assert pool.states[a.fingerprint].daily_exhausted(clock.now)


def test_choose_prefers_the_least_loaded_project_then_healthy_keys() -> None:
    pool = KeyPool(pool_keys(), clock=Clock())
    a, b, c = pool.keys
    load = {"school": 2.0, "home": 0.0}
    assert pool.choose(load=lambda k: load[k.project]) == c
    load["home"] = 5.0
    pool.failed(a.fingerprint, RateLimitError("x", quota=QuotaScope.UNKNOWN, retry_after=None))
    pool.enable(a.fingerprint)  # usable again, and the failure streak is forgotten
    pool.failed(b.fingerprint, AuthError("403 PERMISSION_DENIED"))
    assert pool.choose(load=lambda k: load[k.project]) == a


def test_nothing_usable_says_why_and_when() -> None:
    clock = Clock()
    pool = KeyPool(pool_keys()[:1], clock=clock)
    (a,) = pool.keys
    pool.failed(a.fingerprint, RateLimitError("429", retry_after=20, quota=QuotaScope.PER_MINUTE))
    with pytest.raises(NoUsableKey) as cooling:
        pool.choose()
    assert cooling.value.available_at == clock.now + 20 and not cooling.value.auth
    pool.failed(a.fingerprint, AuthError("API key not valid"))
    with pytest.raises(NoUsableKey) as disabled:
        pool.choose()
    assert disabled.value.auth and disabled.value.exit_code == ExitCode.AUTH
    assert "keys enable" in str(disabled.value)


def test_keys_file_and_config_pool(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# my keys\n{KEY_A} project=school label=a\n\n{KEY_C}  # home\n{KEY_A}\n")
    pool = read_keys_file(keys)
    assert [(k.label, k.project) for k in pool] == [
        ("a", "school"),
        (pool[1].fingerprint, pool[1].fingerprint),  # no project: its own
        (pool[2].fingerprint, pool[2].fingerprint),
    ]
    settings = load_settings(env={}, cwd=tmp_path)
    assert len(resolve_keys(settings, keys_file=keys)) == 2  # the duplicate counts once
    keys.write_text(f"{KEY_A} projekt=x\n")
    with pytest.raises(ConfigError, match="line 1") as bad:
        read_keys_file(keys)
    assert KEY_A not in str(bad.value)
    config = tmp_path / "config.yaml"
    config.write_text("api:\n  keys:\n    - {env: K1, project: p}\n    - {env: K2, label: two}\n")
    settings = load_settings(config_path=config, env={}, cwd=tmp_path)
    resolved = resolve_keys(settings, env={"K1": KEY_A, "K2": KEY_B})
    assert [(k.project, k.label) for k in resolved] == [
        ("p", resolved[0].fingerprint),
        (resolved[1].fingerprint, "two"),
    ]
    with pytest.raises(AuthError, match=r"api.keys\[2\]: \$K2 is not set"):
        resolve_keys(settings, env={"K1": KEY_A})


# -- the pool in a batch ---------------------------------------------------------------
def _assign_projects(sim: Simulator) -> None:
    sim.set_project(KEY_A, "school")
    sim.set_project(KEY_B, "school")
    sim.set_project(KEY_C, "home")


def test_a_bad_key_is_disabled_and_the_batch_finishes_on_the_others(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    _assign_projects(sim)
    sim.invalidate_key(KEY_A)

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await resume(store, sim, tmp_path, "b1", pool_keys())
            assert outcome.counts == {TaskStage.DONE: 3} and outcome.exit_code == ExitCode.OK
            health = await store.key_health()
            a = health[ApiKey(KEY_A, "t").fingerprint]
            assert a["disabled"] and "API key not valid" in a["disabled"]
            assert sum(h["successes"] for h in health.values()) == 3
            # a disabled key stays out of the next run until enabled
            outcome = await resume(store, sim, tmp_path, "b1", pool_keys())
            assert (await store.key_health())[a["fingerprint"]]["disabled"]

    asyncio.run(main())
    fingerprints = {ApiKey(k, "t").fingerprint for k in (KEY_B, KEY_C)}
    assert {r["key"] for r in sim.stats()["generate_requests"]} <= fingerprints


def test_a_task_stays_on_its_key_and_moves_only_when_its_project_runs_out(
    sim: Simulator, tmp_path: Path
) -> None:
    """The school project's daily quota is gone: videos uploaded with school's keys move to
    home's key, upload again (the simulator 403s a file used with another key) and say why;
    when home runs out too, the batch parks (exit 5) and a resume finishes it."""
    make_lectures(tmp_path / "lectures")
    _assign_projects(sim)
    sim.exhaust_daily(project="school")
    keys = pool_keys()

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await resume(store, sim, tmp_path, "b1", keys)
            assert outcome.counts == {TaskStage.DONE: 3}, outcome
            notes = [
                a["note"]
                for t in await store.tasks("b1")
                for a in await store.attempts(t.id)
                if a["note"]
            ]
            return notes

    notes = asyncio.run(main())
    home = ApiKey(KEY_C, "t").fingerprint
    assert all(r["key"] == home for r in sim.stats()["generate_requests"][-3:])
    assert notes and all("moved from" in n and f"to {home}" in n for n in notes)
    assert all("daily quota" in n for n in notes)


def test_every_project_out_of_daily_quota_parks_the_batch(sim: Simulator, tmp_path: Path) -> None:
    make_lectures(tmp_path / "lectures")
    _assign_projects(sim)
    sim.exhaust_daily(project="school")
    sim.exhaust_daily(project="home")

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await resume(store, sim, tmp_path, "b1", pool_keys())
            assert outcome.exit_code == ExitCode.QUOTA
            assert "every key" in (outcome.stop_message or "")
            assert "midnight Pacific" in (outcome.stop_message or "")
            assert TaskStage.FAILED not in outcome.counts
            sim.exhaust_daily(project="school", exhausted=False)
            sim.exhaust_daily(project="home", exhausted=False)
            outcome = await resume(store, sim, tmp_path, "b1", pool_keys())
            assert outcome.counts == {TaskStage.DONE: 3}

    asyncio.run(main())


def test_every_key_disabled_stops_with_exit_4_and_nothing_lost(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    for key in (KEY_A, KEY_B, KEY_C):
        sim.deny_key(key)

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await resume(store, sim, tmp_path, "b1", pool_keys())
            assert outcome.exit_code == ExitCode.AUTH
            assert outcome.counts == {TaskStage.PENDING: 3}

    asyncio.run(main())
    db = sqlite3.connect(tmp_path / "state.db")
    disabled = db.execute("SELECT disabled FROM key_health").fetchall()
    assert len(disabled) == 3 and all("PERMISSION_DENIED" in d for (d,) in disabled)


# -- the `keys` command --------------------------------------------------------------------
def test_keys_command_shows_the_pool_warns_and_enables(cli: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY_A} project=school label=a\n{KEY_B} project=school\n{KEY_C}\n")
    result = cli("keys", "--keys-file", str(keys), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["usable"] == 3 and shown["keys"][0]["label"] == "a"
    assert all(secret not in result.output for secret in (KEY_A, KEY_B, KEY_C))

    async def disable_two() -> None:
        from gs_video_report.batch.api import state_db_path

        async with open_db(state_db_path()) as conn:
            store = CheckpointManager(conn)
            pool = KeyPool(read_keys_file(keys))
            for key in pool.keys[:2]:
                pool.failed(key.fingerprint, AuthError("API key not valid"))
                await store.save_key_health(pool.states[key.fingerprint].__dict__, 0.0)

    asyncio.run(disable_two())
    result = cli("keys", "--keys-file", str(keys))
    assert result.exit_code == 0
    assert "1 of 3 usable" in result.stdout and "disabled:" in result.stdout
    assert "only 1 of 3 keys are usable" in result.stderr
    a = ApiKey(KEY_A, "t").fingerprint
    assert cli("keys", "enable", a).exit_code == 0
    shown = json.loads(cli("keys", "--keys-file", str(keys), "--json").stdout)
    assert shown["usable"] == 2
    bad = cli("keys", "enable", "key-00000000")
    assert bad.exit_code == ExitCode.INPUT and "no key key-00000000" in bad.stderr


# -- the public Python API -------------------------------------------------------------------
def _public_pool(sim: Simulator, **options: Any) -> KeyPool:
    api = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}).api
    return KeyPool(pool_keys(), api=api, **options)


def test_public_api_moves_to_another_key_on_key_level_errors(sim: Simulator) -> None:
    """A script's function gets a fresh client per attempt: key A is invalid (its upload
    fails), key B's project has no daily quota (its generate fails), key C does it."""
    _assign_projects(sim)
    sim.invalidate_key(KEY_A)
    sim.exhaust_daily(project="school")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    pool = _public_pool(sim, sleep=sleep)
    video = SAMPLES / "intro_to_fractions.mp4"

    async def summarise(client: Any, path: Path, *, prompt: str) -> str:
        file = await client.aio.files.upload(file=str(path))
        while file.state.name != "ACTIVE":
            file = await client.aio.files.get(name=file.name)
        answer = await client.aio.models.generate_content(
            model="gemini-3.8-flash",
            contents=[types.Part.from_uri(file_uri=file.uri, mime_type="video/mp4"), prompt],
        )
        return str(answer.text)

    text = asyncio.run(pool.run(summarise, video, prompt="Summarise the lecture"))
    assert text  # the simulator's answer
    a, b, c = (k.fingerprint for k in pool.keys)
    assert pool.states[a].disabled and pool.states[b].daily_exhausted(pool.clock())
    assert pool.states[c].successes == 1 and slept == [0.0, 0.0]
    stats = sim.stats()
    assert [r["key"] for r in stats["generate_requests"]] == [c]  # answered
    assert stats["statuses"].get("429") == 1  # B's generate

    @pool.retrying()
    def files_of(client: Any) -> list[str]:
        return [f.name for f in client.files.list()]

    assert len(files_of()) == 1  # C's upload; A's never happened, B's belongs to B
    with pool.client() as client:
        assert len(list(client.files.list())) == 1
    assert pool.states[c].successes == 3


def test_public_api_backs_off_on_a_server_error_with_the_batchs_retry_policy(
    sim: Simulator,
) -> None:
    """A 503 is not the key's fault: the same key is tried again after an equal-jitter
    backoff (1 s base for scripts), and a pool allowed no retries raises our error."""
    sim.add_fault(Fault("unavailable", "generate", times=1))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    api = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}).api
    one_key = [PoolKey.of(ApiKey(KEY_A, "t"))]
    pool = KeyPool(one_key, api=api, sleep=sleep, rng=random.Random(7))

    async def ask(client: Any) -> str:
        video = types.Part.from_uri(
            file_uri="https://www.youtube.com/watch?v=abc123XYZ_0", mime_type="video/*"
        )
        answer = await client.aio.models.generate_content(
            model="gemini-3.8-flash", contents=[video, "Summarise the lecture"]
        )
        return str(answer.text)

    assert asyncio.run(pool.run(ask))
    assert len(slept) == 1 and 0.5 <= slept[0] <= 1.0
    stats = sim.stats()
    assert stats["calls"]["generate"] == 2 and stats["statuses"].get("503") == 1
    assert [r["key"] for r in stats["generate_requests"]] == [one_key[0].fingerprint]
    state = pool.states[one_key[0].fingerprint]
    assert (state.successes, state.disabled) == (1, None)

    sim.add_fault(Fault("unavailable", "generate", times=1))
    strict = KeyPool(one_key, api=api, sleep=sleep, max_retries=0)
    with pytest.raises(TransientError):
        asyncio.run(strict.run(ask))
    assert len(slept) == 1  # no wait: nothing was going to be retried


def test_public_api_raises_our_error_when_no_key_can_do_it(sim: Simulator) -> None:
    for key in (KEY_A, KEY_B, KEY_C):
        sim.invalidate_key(key)
    pool = _public_pool(sim)
    with pytest.raises(AuthError, match="API key not valid") as raised:
        pool.run_sync(lambda client: list(client.files.list()))
    assert all(k not in str(raised.value) for k in (KEY_A, KEY_B, KEY_C))
    assert all(s.disabled for s in pool.states.values())


def test_the_documented_example_runs() -> None:
    """examples/key_pool.py (shown in docs/keys.md) runs as it is and says what it did."""
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "key_pool.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("answer: [Simulated]")
    assert "disabled: 400 INVALID_ARGUMENT" in lines[2] and "daily quota" in lines[3]
    assert lines[4].endswith(" ok")
