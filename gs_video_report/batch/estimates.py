"""What tasks are expected to cost: the raw estimate of a video (duration x tokens per
second at its template's settings, plus the prompt), corrected by the real usage of the
videos that finished (``Estimator``)."""

from __future__ import annotations

from datetime import UTC, datetime

from gs_video_report.batch.cost import Estimator, Prices, estimate_input_tokens
from gs_video_report.batch.pipeline import PreparedVideo, rebuild
from gs_video_report.clock import Clock
from gs_video_report.errors import GsVideoReportError
from gs_video_report.models import GenerationSettings, TaskStage, Usage
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.storage.checkpoint import TaskRow


def raw_estimate(video: PreparedVideo) -> int:
    return estimate_input_tokens(video.duration_s, video.template.generation, video.prompt)


class Estimates:
    def __init__(self, registry: TemplateRegistry, prices: Prices, clock: Clock) -> None:
        self.registry = registry
        self.prices = prices
        self.clock = clock
        self.estimator = Estimator()

    def tokens(self, video: PreparedVideo) -> tuple[int, int]:
        """(input, output) tokens expected for the video's first call."""
        return self.estimator.tokens(raw_estimate(video), video.template.generation)

    @property
    def calibrated(self) -> bool:
        """Real usage has corrected the estimates."""
        return self.estimator.observed > 0

    def observe(self, video: PreparedVideo, usage: Usage) -> None:
        self.estimator.observe(raw_estimate(video), usage)

    def _raw_of(self, task: TaskRow) -> int | None:
        try:
            now = datetime.fromtimestamp(self.clock.time(), UTC)
            return raw_estimate(rebuild(task, self.registry, now))
        except GsVideoReportError:
            return None  # its template is gone

    def usd(self, tasks: list[TaskRow]) -> float | None:
        """What ``tasks`` would cost by the corrected estimate (None: a price is unknown)."""
        total = 0.0
        for task in tasks:
            raw = self._raw_of(task)
            if raw is None:
                raw = estimate_input_tokens(task.duration_s, GenerationSettings(), "")
            tokens_in, tokens_out = self.estimator.tokens(raw)
            usd = self.prices.usd(task.model, tokens_in, tokens_out)
            if usd is None:
                return None
            total += usd
        return total

    def learn_from(self, finished: list[TaskRow]) -> None:
        """Seed the correction with videos an earlier run of the batch finished."""
        for task in finished:
            if task.stage is not TaskStage.DONE or not task.prompt_tokens:
                continue
            raw = self._raw_of(task)
            if raw is None:
                continue
            usage = Usage(
                prompt_tokens=task.prompt_tokens,
                candidates_tokens=task.output_tokens or 0,
                thoughts_tokens=task.thoughts_tokens or 0,
                total_tokens=task.total_tokens or 0,
            )
            self.estimator.observe(raw, usage)
