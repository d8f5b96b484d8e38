"""The server's garbage collection (`serve.collector`): what requests leave is frozen, and collected in full
when the server is idle and it grew, or every so many requests."""

import gc
import weakref

from serve.collector import Collector

NEVER = 10**12  # requests: no count of them triggers a full pass


class Node:
    pass


def a_cycle() -> weakref.ref:
    node = Node()
    node.me = node
    return weakref.ref(node)


def test_what_a_request_leaves_is_out_of_the_collectors_way_until_the_server_is_idle():
    collector = Collector(idle_s=0.0, pass_every=NEVER)
    gc.collect()
    try:
        collector.request_started()
        alive = a_cycle()
        collector.request_ended()
        gc.collect()  # an automatic or explicit pass skips frozen objects
        assert alive() is not None
        assert collector.collect_if_due()
        assert alive() is None and collector.full_passes == 1
        assert not collector.collect_if_due()  # nothing frozen since
    finally:
        gc.unfreeze()


def test_no_full_pass_while_a_request_runs_or_before_the_pause_is_long_enough():
    busy, recent = Collector(idle_s=0.0, pass_every=NEVER), Collector(idle_s=3600.0, pass_every=NEVER)
    try:
        busy.request_started()
        busy.request_started()
        busy.request_ended()
        assert not busy.collect_if_due()  # one still runs
        busy.request_ended()
        assert busy.collect_if_due()
        recent.request_started()
        recent.request_ended()
        assert not recent.collect_if_due()
    finally:
        gc.unfreeze()


def test_under_load_that_never_pauses_a_full_pass_comes_every_so_many_requests():
    collector = Collector(idle_s=3600.0, pass_every=3)
    try:
        collector.request_started()  # a request that runs throughout: never idle
        alive = a_cycle()
        collector.request_started()
        collector.request_ended()
        collector.request_started()
        collector.request_ended()
        assert not collector.collect_if_due() and alive() is not None  # two requests ended
        collector.request_started()
        collector.request_ended()
        assert collector.collect_if_due() and alive() is None
        collector.request_started()
        collector.request_ended()
        assert not collector.collect_if_due()  # counted again from the pass
    finally:
        gc.unfreeze()


def test_a_pause_brings_a_full_pass_only_once_the_frozen_objects_grew_by_a_quarter():
    collector = Collector(idle_s=0.0, pass_every=NEVER)
    try:
        collector.request_started()
        collector.request_ended()
        assert collector.collect_if_due()  # the test run's objects, frozen for the first time
        collector.request_started()
        alive = a_cycle()
        collector.request_ended()
        assert not collector.collect_if_due() and alive() is not None  # idle, but a few objects more
        kept = [Node() for _ in range(gc.get_freeze_count() // 4 + 1)]
        gc.freeze()
        assert not collector.collect_if_due()  # this pause was looked at already
        collector.request_started()
        collector.request_ended()  # a new pause: the quarter is there
        assert collector.collect_if_due() and alive() is None
        assert kept
    finally:
        gc.unfreeze()
