"""Riding out a lost network: ``batch.network`` alone on a virtual clock, then the whole
engine (real SDK, simulator offline from the start or for a minute mid-batch) and the CLI.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.batch import events as ev
from gs_video_report.batch.api import Engine, PlanRequest, RunOptions
from gs_video_report.batch.decide import Fail, Offline, Requeue, RetryAt, StopBatch
from gs_video_report.batch.network import Network
from gs_video_report.clock import Clock
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.errors import ConfigError, ExitCode, NetworkError
from gs_video_report.models import BatchStatus, StopReason, TaskStage
from gs_video_report.simulator import Simulator
from tests.conftest import SAMPLES, TEST_KEY, copy_lecture, make_lectures
from tests.virtual_time import SteppingClock, VirtualClock

OFFLINE = Offline(RetryAt(1.0, 1.0), "upload: connection failed (ConnectError: refused)")


def _network(
    vc: VirtualClock, up: Callable[[int], bool], *, wait_s: float = 200.0
) -> tuple[Network, ev.Recorder, list[str]]:
    """A Network whose ``n``-th probe (0: the check at once) gets through when ``up(n)``."""
    events, stops = ev.Recorder(), []
    probes = iter(range(10_000))

    async def probe() -> bool:
        return up(next(probes))

    network = Network(
        Clock(vc, vc.sleep), events, wait_s=wait_s, probe=probe, on_give_up=stops.append
    )
    return network, events, stops


def _lost(events: ev.Recorder) -> list[ev.NetworkLost]:
    return [e for e in events.events if isinstance(e, ev.NetworkLost)]


# -- the Network on its own ----------------------------------------------------------------
def test_a_probe_that_gets_through_at_once_makes_it_the_calls_own_failure() -> None:
    vc = VirtualClock()
    network, events, _ = _network(vc, lambda n: True)

    async def main() -> None:
        assert await network.settle(OFFLINE, vc.now) == OFFLINE.fallback  # uses a try, as a 503
        await network.ready()  # never held
        await network.aclose()

    asyncio.run(vc.run(main))
    assert network.online and network.probes == 1 and events.events == []


def test_probes_back_off_5_10_20_40_60_then_the_batch_stops_at_the_wait() -> None:
    vc = VirtualClock()
    network, events, stops = _network(vc, lambda n: False, wait_s=200.0)
    start = vc.now

    async def main() -> None:
        assert await network.settle(OFFLINE, vc.now) == Requeue("offline: waiting for the network")
        held = asyncio.ensure_future(network.ready())
        await asyncio.sleep(0)
        assert not held.done()  # no call starts while the network is down
        with pytest.raises(NetworkError, match="could not be reached for 3 min"):
            await held
        assert vc.now == start + 200.0
        with pytest.raises(NetworkError):  # and none after the give-up
            await network.ready()
        assert await network.settle(OFFLINE, vc.now) == StopBatch(StopReason.OFFLINE, stops[0])
        await network.aclose()

    asyncio.run(vc.run(main))
    assert [e.delay_s for e in _lost(events)] == [5, 10, 20, 40, 60, 60, 5]  # the last: to 200
    assert {e.since for e in _lost(events)} == {start}
    assert {e.reason for e in _lost(events)} == {OFFLINE.reason}
    assert len(stops) == 1 and "no video failed" in stops[0]
    assert network.probes == 1 + 7


def test_calls_held_while_down_go_on_once_a_probe_gets_through() -> None:
    vc = VirtualClock()
    network, events, stops = _network(vc, lambda n: n >= 3)  # the check, +5 and +15 fail
    start = vc.now

    async def main() -> None:
        # four calls fail together: one check, all four put back free
        verdicts = await asyncio.gather(*(network.settle(OFFLINE, vc.now) for _ in range(4)))
        assert verdicts == [Requeue("offline: waiting for the network")] * 4
        await asyncio.gather(*(network.ready() for _ in range(3)))
        assert vc.now == start + 35.0
        await network.aclose()

    asyncio.run(vc.run(main))
    assert [e.delay_s for e in _lost(events)] == [5, 10, 20]
    assert [e.after_s for e in events.events if isinstance(e, ev.NetworkBack)] == [35.0]
    assert network.online and network.probes == 4 and stops == []


def test_a_failure_the_outage_overlapped_is_the_outages_even_once_it_is_over() -> None:
    """A call that failed during the outage but whose task was judged after it ended is put
    back free; one that began after the outage is judged by a probe again."""
    vc = VirtualClock()
    network, _, _ = _network(vc, lambda n: n >= 1)  # down at the check, up at +5

    async def main() -> None:
        began = vc.now
        assert await network.settle(OFFLINE, began) == Requeue("offline: waiting for the network")
        await network.ready()
        assert network.online and network.probes == 2
        late = await network.settle(OFFLINE, began)  # began before the network came back
        assert late == Requeue("offline: waiting for the network") and network.probes == 2
        await vc.sleep(1)
        assert await network.settle(OFFLINE, vc.now) == OFFLINE.fallback  # a probe: its own
        assert network.probes == 3
        await network.aclose()

    asyncio.run(vc.run(main))


def test_a_stop_releases_the_held_calls_and_puts_their_tasks_back() -> None:
    vc = VirtualClock()
    network, _, stops = _network(vc, lambda n: False)

    async def main() -> None:
        await network.settle(OFFLINE, vc.now)
        held = asyncio.ensure_future(network.ready())
        await vc.sleep(12)  # the user presses Ctrl-C, twelve seconds in
        network.close()
        with pytest.raises(NetworkError, match="stopping"):
            await held
        assert await network.settle(OFFLINE, vc.now) == Requeue("offline: waiting for the network")
        await network.aclose()

    asyncio.run(vc.run(main))
    assert stops == [] and network.probes == 2  # the check and the one at +5


def test_a_probe_that_breaks_holds_nothing() -> None:
    vc = VirtualClock()
    network, _, _ = _network(vc, lambda n: {}["no such service"])  # a bug in the probe

    async def main() -> None:
        assert await network.settle(OFFLINE, vc.now) == OFFLINE.fallback
        await network.ready()
        await network.aclose()

    asyncio.run(vc.run(main))
    assert network.online


def test_an_offline_fallback_can_be_a_failure() -> None:
    vc = VirtualClock()
    network, _, _ = _network(vc, lambda n: True)
    last_try = Offline(Fail("NetworkError", "reset"), "reset")

    async def main() -> None:
        assert await network.settle(last_try, vc.now) == Fail("NetworkError", "reset")
        await network.aclose()

    asyncio.run(vc.run(main))


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan", "a while"])
def test_the_offline_wait_must_be_a_finite_positive_number(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GS_VIDEOREPORT_API__OFFLINE_WAIT"):
        load_settings(env={"GS_VIDEOREPORT_API__OFFLINE_WAIT": value}, cwd=tmp_path)
    assert load_settings(env={}, cwd=tmp_path).api.offline_wait == 1800.0  # 30 minutes


# -- the engine: real SDK, simulator ------------------------------------------------------
def _course(folder: Path, count: int) -> Path:
    """``count`` videos with distinct names (the simulator counts generations by name)."""
    folder.mkdir(parents=True)
    samples = sorted(SAMPLES.glob("*.mp4"))
    for i in range(count):
        copy_lecture(samples[i % len(samples)], folder / f"lecture_{i:02d}.mp4")
    return folder


def _engine(sim: Simulator, tmp_path: Path, clock: SteppingClock, **api: str) -> Engine:
    env = {"GS_VIDEOREPORT_BASE_URL": sim.url}
    env.update({f"GS_VIDEOREPORT_API__{k.upper()}": v for k, v in api.items()})
    settings = load_settings(env=env, cwd=tmp_path)
    keys = [PoolKey.of(ApiKey(TEST_KEY, "test"))]
    return Engine(settings, keys=keys, home=tmp_path / "home", clock=clock.clock)


def _of(events: ev.Recorder, kind: type[Any]) -> list[Any]:
    return [e for e in events.events if isinstance(e, kind)]


@pytest.mark.timeout(60)
def test_unreachable_from_the_start_fails_nothing_and_stops_resumable_with_exit_6(
    sim: Simulator, tmp_path: Path
) -> None:
    """Before: with the endpoint down, 17 of 17 videos were marked failed within 15 s."""
    sim.set_offline()
    engine = _engine(sim, tmp_path, SteppingClock(), offline_wait="300")
    folder = _course(tmp_path / "videos", 6)
    first, second = ev.Recorder(), ev.Recorder()
    offline_stats: dict[str, Any] = {}

    async def main() -> None:
        planned = await engine.plan(PlanRequest(output=tmp_path / "out", input_dir=folder))
        options = RunOptions(parallel=3, simulated=True)
        outcome = await engine.start(planned, options, reporter=first)
        assert outcome.stop_reason is StopReason.OFFLINE, outcome
        assert outcome.exit_code == ExitCode.OFFLINE == 6
        assert outcome.counts == {TaskStage.PENDING: 6}
        # at least the 5 min waited (the last probe itself may take a virtual minute more)
        waited = re.search(r"could not be reached for (\d+) min", outcome.stop_message or "")
        assert waited is not None and 5 <= int(waited.group(1)) <= 6, outcome.stop_message
        view = await engine.status(outcome.batch_id)
        assert view.status is BatchStatus.OFFLINE and not view.status.final
        assert [t.attempts for t in view.tasks] == [0] * 6
        offline_stats.update(sim.stats())
        sim.set_offline(False)  # the network is back: a resume finishes everything
        again = await engine.resume(outcome.batch_id, reporter=second)
        assert again.counts == {TaskStage.DONE: 6} and again.exit_code == ExitCode.OK
        view = await engine.status(outcome.batch_id)
        assert [t.attempts for t in view.tasks] == [0] * 6

    asyncio.run(main())
    assert offline_stats["calls"] == {}  # nothing reached the API while it was down
    dropped = dict(offline_stats["dropped"])
    assert dropped.pop("list_files") == 1 + len(_of(first, ev.NetworkLost))  # the probes
    # the first calls of the videos in flight, then the gate held every call for 5 minutes
    assert 1 <= sum(dropped.values()) <= 6, dropped  # at most once per video
    assert not _of(first, ev.TaskFailed) and not _of(first, ev.RetryScheduled)
    delays = [e.delay_s for e in _of(first, ev.NetworkLost)]
    assert delays[:5] == [5, 10, 20, 40, 60] and max(delays) == 60
    assert _of(first, ev.BatchStopping)[0].reason is StopReason.OFFLINE
    assert not _of(second, ev.NetworkLost)
    assert sim.stats()["generate_by_subject"] == {f"lecture_{i:02d}.mp4": 1 for i in range(6)}


@pytest.mark.timeout(60)
def test_a_minute_offline_mid_batch_fails_nothing_uses_no_try_and_pays_nothing_twice(
    tmp_path: Path,
) -> None:
    clock = SteppingClock()
    with Simulator(clock=clock.time) as sim:  # the outage lasts a minute of virtual time
        sim.outage(after_calls=20, duration_s=60)
        outage = sim.state.outage
        engine = _engine(sim, tmp_path, clock)
        folder = _course(tmp_path / "videos", 8)
        events = ev.Recorder()

        async def main() -> list[int]:
            planned = await engine.plan(PlanRequest(output=tmp_path / "out", input_dir=folder))
            options = RunOptions(parallel=2, max_uploads=2, simulated=True)
            outcome = await engine.start(planned, options, reporter=events)
            assert outcome.counts == {TaskStage.DONE: 8} and outcome.exit_code == ExitCode.OK
            return [t.attempts for t in (await engine.status(outcome.batch_id)).tasks]

        attempts = asyncio.run(main())
        stats = sim.stats()
    assert attempts == [0] * 8
    assert stats["generate_by_subject"] == {f"lecture_{i:02d}.mp4": 1 for i in range(8)}
    assert stats["uploads_completed"] == 8  # a finished upload is reused, not sent again
    lost, (back,) = _of(events, ev.NetworkLost), _of(events, ev.NetworkBack)
    assert outage is not None and outage.started is not None and lost
    assert lost[0].since >= outage.started and lost[0].since + back.after_s >= outage.started + 60
    # every call that met the outage is accounted for: the probes, and one call per video
    # in flight (put back free, once: the gate held each video's next call)
    put_back = [e.task.id for e in _of(events, ev.TaskRequeued) if e.reason.startswith("offline")]
    dropped = dict(stats["dropped"])
    assert dropped.pop("list_files") == len(lost)  # the check, then each probe but the last
    assert put_back and len(put_back) == len(set(put_back))
    assert sum(n for e, n in dropped.items() if e != "delete_file") == len(put_back)
    assert not _of(events, ev.TaskFailed) and not _of(events, ev.RetryScheduled)


# -- the command line -----------------------------------------------------------------------
def test_the_cli_stops_offline_with_exit_6_and_the_command_that_resumes(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GS_VIDEOREPORT_API__OFFLINE_WAIT", "120")
    sim.set_offline()
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    result = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q")
    assert result.exit_code == ExitCode.OFFLINE == 6, result.output
    assert "Stopped (offline): the Gemini API could not be reached for 2 min" in result.stderr
    assert "no video failed" in result.stderr and "0 failed" not in result.stderr
    (resume,) = [line for line in result.stderr.splitlines() if line.startswith("Resume with: ")]
    batch_id = resume.split()[4]
    assert resume == f"Resume with: gs_videoreport resume {batch_id}"
    sim.set_offline(False)
    again = cli("resume", batch_id, "--simulate", "-q")
    assert again.exit_code == ExitCode.OK, again.output
    assert len([p for p in out.rglob("*.md") if "_reports" not in p.parts]) == 3
    assert "6 offline: the Gemini API could not be reached" in " ".join(
        cli("--help").stdout.split()
    )
