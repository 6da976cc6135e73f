"""The one engine loop: feed, step, report, the same for every engine (vLLM, hetegen, the
tests' fake).

Invariant: a request the feed hands over either joins the engine or comes back at once as
an error row (`Stepper.admit` says why), and the feed hears every finished or refused request
before it is asked again; the loop ends when the engine holds nothing and the feed is
exhausted, and an idle engine with a feed that hands it nothing is an error (the feed would
never be asked again). When the feed pauses (a phase of the run ended), the loop yields to
the feed's owner before the engine steps again and asks the feed anew once it has acted;
the requests in flight stay in the engine meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

from blend.engines.base import EngineOutput, EngineRequest, EngineState, Feed


def utc_now() -> datetime:
    """Now, in UTC: when a request was handed over or finished (lineage columns)."""
    return datetime.now(UTC)


class Stepper(Protocol):
    """What an engine does inside the loop."""

    def state(self) -> EngineState:
        """The engine after its last step, as the feed sees it."""
        ...

    def admit(self, request: EngineRequest, started_at: datetime) -> str | None:
        """Take `request` (handed over at `started_at`); None, or why it is refused."""
        ...

    def has_work(self) -> bool:
        """Whether a request is running or waiting inside the engine."""
        ...

    def step(self) -> list[EngineOutput]:
        """One engine step; the requests it finished (possibly none)."""
        ...


def feed_loop(engine: Stepper, feed: Feed) -> Iterator[list[EngineOutput]]:
    """Run `feed` through `engine` (module invariant): one list of finished outputs per step,
    refused requests first."""
    finished: list[EngineOutput] = []
    paused = False  # the loop yielded to the feed's owner at the last take
    while True:
        refused: list[EngineOutput] = []
        for request in feed.take(engine.state(), finished):
            started_at = utc_now()
            reason = engine.admit(request, started_at)
            if reason is not None:
                refused.append(EngineOutput.failed(request, reason, started_at))
        if feed.paused:  # its owner acts now (re-plans, hands over), before the next step
            if paused:
                raise RuntimeError("the feed is still paused: its owner did not act")
            paused = True
            finished = refused
            yield refused
            continue
        paused = False
        if not engine.has_work():
            if refused:  # the feed hears of them before it is asked again
                finished = refused
                yield refused
                continue
            if feed.exhausted:
                return
            raise RuntimeError("the feed handed nothing to an idle engine")
        finished = refused + engine.step()
        yield finished
