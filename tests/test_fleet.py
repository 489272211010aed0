"""What a coordinator shows of its workers (surefetch.fleet): rates, alive and gone,
URLs reclaimed summed over each worker's sessions."""

from __future__ import annotations

from surefetch.fleet import Fleet


def test_rates_come_from_the_records_written_over_a_second_or_more() -> None:
    fleet = Fleet()
    fleet.took("vm-1-aa-1", 100)
    fleet.observe(["vm-1-aa-1", "vm-2-bb-1"], {}, now=10.0)
    assert fleet.progress_text() == "workers 2 alive: vm-1-aa 0/s, vm-2-bb 0/s"
    fleet.took("vm-1-aa-1", 3000)
    fleet.took("vm-2-bb-1", 1000)
    fleet.observe(["vm-1-aa-1", "vm-2-bb-1"], {}, now=10.5)  # too soon to measure
    assert fleet.workers["vm-1-aa"].rate == 0.0
    fleet.observe(["vm-1-aa-1", "vm-2-bb-1"], {}, now=12.0)
    assert fleet.workers["vm-1-aa"].rate == 1500.0
    assert fleet.workers["vm-2-bb"].rate == 500.0
    assert fleet.progress_text() == "workers 2 alive: vm-1-aa 1,500/s, vm-2-bb 500/s"
    assert fleet.summary_text() == "from 2 workers (vm-1-aa 3100, vm-2-bb 1000)"


def test_a_worker_gone_and_the_urls_reclaimed_show() -> None:
    """vm-1 stops (its heartbeat expires); vm-2 reclaims its URLs in its first session,
    then after a new epoch in its second: the counts of both sessions add up, and a
    session's last word counts once however often it is read."""
    fleet = Fleet()
    fleet.took("vm-1-aa-1", 10)
    fleet.took("vm-2-bb-1", 10)
    fleet.observe(["vm-1-aa-1", "vm-2-bb-1"], {"vm-2-bb-1": "0 0"}, now=1.0)
    fleet.observe(["vm-2-bb-1"], {"vm-2-bb-1": "40 1"}, now=2.0)
    fleet.observe(["vm-2-bb-1"], {"vm-2-bb-1": "40 1"}, now=3.0)
    assert fleet.progress_text() == "workers 1 alive: vm-2-bb 0/s, 1 gone; 40 URLs reclaimed"
    fleet.observe(["vm-2-bb-2"], {"vm-2-bb-2": "5 0", "junk": "x y"}, now=4.0)  # new epoch
    assert (fleet.reclaimed, fleet.lost, fleet.alive) == (45, 1, 1)
    assert fleet.summary_text() == (
        "from 2 workers (vm-1-aa 10, vm-2-bb 10); 45 URLs reclaimed from workers gone"
        " (1 worker_lost)"
    )


def test_nothing_shows_before_a_worker_is_seen_and_many_are_cut_short() -> None:
    fleet = Fleet()
    assert (fleet.progress_text(), fleet.summary_text()) == ("", "")
    alive = [f"w{k}-1" for k in range(5)]
    fleet.observe(alive, {}, now=1.0)
    assert fleet.progress_text(shown=2) == "workers 5 alive: w0 0/s, w1 0/s, 3 more"
    assert fleet.summary_text() == ""  # none sent a record yet
