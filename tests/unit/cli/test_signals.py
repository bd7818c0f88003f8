"""SIGINT / SIGTERM in the command: an interruption at once, or after a deferred block (nested blocks: after
the outermost); handlers installed for a block and the previous ones restored."""

from __future__ import annotations

import signal
import threading

import pytest

from pytest_saeval.cli.signals import Interrupted, Signals


def test_a_signal_outside_a_deferred_block_interrupts_at_once() -> None:
    with pytest.raises(Interrupted) as info:
        Signals().handle(signal.SIGTERM, None)
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)


def test_a_signal_in_a_deferred_block_waits_for_the_outermost_block_to_end() -> None:
    signals = Signals()
    done = []
    with pytest.raises(Interrupted) as info, signals.deferred():
        with signals.deferred():
            signals.handle(signal.SIGINT, None)
            signals.handle(signal.SIGTERM, None)  # a second one: the first is what is reported
            done.append("inner")
        done.append("outer")  # the inner block's end does not interrupt
    assert done == ["inner", "outer"]
    assert info.value.signum == signal.SIGINT
    assert signals.pending is None and signals.depth == 0


def test_a_deferred_block_without_a_signal_ends_quietly() -> None:
    signals = Signals()
    with signals.deferred():
        pass
    assert signals.depth == 0 and signals.pending is None


def test_installed_handles_the_signals_and_restores_the_previous_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signals = Signals()
    with signals.installed():
        assert signal.getsignal(signal.SIGTERM) == signals.handle and signal.getsignal(signal.SIGINT) == signals.handle
        with pytest.raises(Interrupted):
            signal.raise_signal(signal.SIGTERM)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body() -> None:
        with Signals().installed():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_without_restore_a_signal_after_the_block_is_ignored() -> None:
    """The console script's way: once the command is done, a late SIGTERM neither raises nor ends the
    process (it exits with the command's code); the handlers it replaced are put back by this test."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with Signals().installed(restore=False):
            pass
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.raise_signal(signal.SIGTERM)  # ignored: no exception, the process goes on
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
