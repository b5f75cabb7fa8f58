"""The scheduler is pure: given ready jobs, what runs and the devices, it says what starts where."""

from orchestrator.execute.scheduler import GANG, Device, Inventory, Placement, available, decide, gang_spec, gangs

from .helpers import GIB, box, spec


def keys(placements):
    return [(p.key, p.device) for p in placements]


def test_critical_path_first_and_quantize_beside_the_device():
    ready = [spec("kld1", gib=3), spec("q1", "quantize", "cpu", threads=16), spec("base", "base", gib=4)]
    got = keys(decide(ready, [], box(1)))
    assert got[0] == ("base", "GPU-0")  # the reference logits unblock every KLD of their context
    assert ("q1", None) in got          # the CPU quantizes while the GPU works
    assert ("kld1", "GPU-0") in got     # 3 + 4 GiB fit beside each other on 24


def test_kld_jobs_share_a_device_while_the_ledger_allows():
    ready = [spec(f"k{i}", gib=10) for i in range(4)]
    got = keys(decide(ready, [], box(1)))
    assert got == [("k0", "GPU-0"), ("k1", "GPU-0")]  # 3 × 10 GiB + margin would exceed 24


def test_live_free_memory_respects_a_foreign_process():
    inv = box(1, total=24, free=8)  # someone else holds 16 GiB
    got = keys(decide([spec("k0", gib=5), spec("k1", gib=5)], [], inv))
    assert got == [("k0", "GPU-0")]
    assert available(inv.devices[0], [], inv) == 8 * GIB - inv.margin


def test_spreads_over_devices_emptiest_first():
    got = keys(decide([spec(f"k{i}", gib=2) for i in range(4)], [], box(4)))
    assert sorted(d for _, d in got) == ["GPU-0", "GPU-1", "GPU-2", "GPU-3"]


def test_bench_has_its_device_alone_and_nothing_cpu_heavy_beside_it():
    bench = spec("b", "bench", exclusive=True, quiet=True)
    kld_on_0 = Placement("k", "GPU-0", spec("k", gib=2))
    assert keys(decide([bench], [kld_on_0], box(2))) == [("b", "GPU-1")]  # a GPU job leaves the CPU alone
    assert decide([bench], [kld_on_0], box(1)) == []                      # but its device is taken
    quant_running = Placement("q", None, spec("q", "quantize", "cpu", threads=16))
    assert decide([bench], [quant_running], box(2)) == []                 # the host is busy
    got = decide([bench, spec("q2", "quantize", "cpu", threads=4)], [], box(2))
    assert keys(got) == [("q2", None)]        # one bench cannot fill 2 idle GPUs: quantize, the bench waits
    started = Placement("b", "GPU-0", bench)
    got = decide([spec("k3", gib=1), spec("q3", "quantize", "cpu", threads=4)], [started], box(2))
    assert keys(got) == [("k3", "GPU-1")]                                 # no quantize beside the bench


def test_on_a_cpu_box_the_bench_runs_alone():
    cpu = Inventory((Device("cpu", "EPYC", 24 * GIB, 20 * GIB, "cpu"),), host_threads=2)
    bench = spec("b", "bench", exclusive=True, quiet=True, threads=2)
    assert decide([bench], [Placement("k", "cpu", spec("k", threads=2))], cpu) == []
    assert keys(decide([bench, spec("k2", threads=2)], [], cpu)) == [("k2", "cpu")]
    assert decide([spec("k3", threads=1)], [Placement("b", "cpu", bench)], cpu) == []


def test_bench_with_device_isolation_leaves_other_devices_working():
    bench = spec("b", "bench", exclusive=True, quiet=False)
    busy = [Placement("x", "GPU-0", spec("x", gib=1))]
    # a KLD ready beside it takes the free device first (the bench waits for a device of its own)
    assert keys(decide([bench, spec("k", gib=1)], busy, box(2))) == [("k", "GPU-1")]
    # alone, the bench takes the free device while GPU-0 keeps working; and beside a bench, the other
    # device still takes work
    assert keys(decide([bench], busy, box(2))) == [("b", "GPU-1")]
    assert keys(decide([spec("k", gib=1)], [Placement("b", "GPU-1", bench)], box(2))) == [("k", "GPU-0")]


def test_exclusive_job_gets_the_device_alone():
    oom_retry = spec("big", gib=20, exclusive=True)
    assert decide([oom_retry], [Placement("k", "GPU-0", spec("k", gib=1))], box(1)) == []
    got = decide([oom_retry, spec("small", gib=1)], [], box(1))
    assert keys(got) == [("big", "GPU-0")]


def test_cpu_box_splits_threads_between_jobs():
    cpu = Inventory((Device("cpu", "EPYC", 24 * GIB, 20 * GIB, "cpu"),), host_threads=2)
    one_each = [spec("a", threads=1), spec("b", threads=1), spec("c", threads=1)]
    assert keys(decide(one_each, [], cpu)) == [("a", "cpu"), ("b", "cpu")]
    whole = [spec("a", threads=2), spec("b", threads=2)]
    assert keys(decide(whole, [], cpu)) == [("a", "cpu")]
    # a job asking more threads than the box has still runs, alone
    assert keys(decide([spec("x", threads=8)], [], cpu)) == [("x", "cpu")]


def test_a_job_too_big_for_any_device_starts_alone_rather_than_waiting_forever():
    got = keys(decide([spec("huge", gib=40), spec("huge2", gib=40)], [], box(1)))
    assert got == [("huge", "GPU-0")]
    assert decide([spec("huge2", gib=40)], [Placement("huge", "GPU-0", spec("huge", gib=40))], box(1)) == []


def test_quantizing_waits_only_while_benches_can_fill_idle_gpus():
    bench = [spec(f"b{i}", "bench", exclusive=True, quiet=True) for i in range(3)]
    quant = spec("q", "quantize", "cpu", threads=8)
    # 4 idle GPUs, 3 benches: a quantization now would keep the benches off them and leave all 4 idle
    # for its whole run... but 3 benches cannot fill 4 GPUs either, so the host quantizes meanwhile
    assert keys(decide([*bench, quant], [], box(4))) == [("q", None)]
    # 2 idle GPUs (2 busy with KLDs), 3 benches: the benches run, the quantization waits
    busy = [Placement(f"k{i}", f"GPU-{i}", spec(f"k{i}", gib=2)) for i in range(2)]
    assert sorted(keys(decide([*bench, quant], busy, box(4)))) == [("b0", "GPU-2"), ("b1", "GPU-3")]
    # a ready KLD takes one of the idle GPUs: one left for 3 benches, still worth waiting for
    assert ("q", None) not in keys(decide([*bench, quant, spec("k9", gib=2)], busy, box(4)))
    # every idle GPU has other work: quantizing goes on (and the benches wait for the host)
    got = keys(decide([*bench, quant, spec("k8", gib=2), spec("k9", gib=2)], busy, box(4)))
    assert ("q", None) in got and not any(k.startswith("b") for k, _ in got)


def test_a_device_is_shared_by_two_jobs_at_most_and_only_while_there_is_a_backlog():
    got = keys(decide([spec(f"k{i}", gib=1) for i in range(5)], [], box(2)))
    assert sorted(d for _, d in got) == ["GPU-0", "GPU-0", "GPU-1", "GPU-1"]  # 5 ready > 2 GPUs: shared, 2 each
    one_each = [Placement(f"r{i}", f"GPU-{i}", spec(f"r{i}", gib=1)) for i in range(2)]
    # the tail: 2 ready for 2 GPUs, both busy: they wait for a device of their own
    assert decide([spec("k0", gib=1), spec("k1", gib=1)], one_each, box(2)) == []
    assert len(decide([spec(f"k{i}", gib=1) for i in range(3)], one_each, box(2))) == 2


def _fed(key, feed="ref-A", reader_gib=1.0, feed_gib=1.0, exclusive=False):
    s = spec(key, gib=reader_gib + feed_gib, exclusive=exclusive)
    res = s.resources.model_copy(update={"feed_bytes": int(feed_gib * GIB)})
    return s.model_copy(update={"feed": ["llama-perplexity", "-m", feed], "resources": res})


def test_streamed_kld_jobs_of_one_reference_go_as_a_gang_as_large_as_memory_allows():
    ready = [_fed("a"), spec("b"), _fed("c"), _fed("d", feed="ref-B"), _fed("e"), _fed("x", exclusive=True)]
    groups = gangs(ready, box(1, total=24))
    # one reference run feeds a, c and e; another d; b reads a file, x holds its device alone
    assert [[s.key for s in g] for g in groups] == [["a", "c", "e"], ["b"], ["d"], ["x"]]
    # the reference's memory once, each reader's: 1 + 3 × 1 GiB
    assert gang_spec(groups[0]).resources.device_bytes == 4 * GIB and gang_spec(groups[1]) is groups[1][0]
    # a device of 4 GiB (less its margin) holds the reference and two readers: the third waits for another gang
    small = gangs([_fed(k) for k in "acegi"], box(1, total=4))
    assert [[s.key for s in g] for g in small] == [["a", "c"], ["e", "g"], ["i"]]
    # the host's memory too: each job 3 GiB on the host, 2 of them the reference's
    host = {k: (3 * GIB, 2 * GIB) for k in "acegi"}
    assert [len(g) for g in gangs([_fed(k) for k in "acegi"], box(1), 5 * GIB, host)] == [3, 2]
    # and never more than GANG: one gang's results come together
    assert [len(g) for g in gangs([_fed(str(i), reader_gib=0.01, feed_gib=0.01) for i in range(GANG + 3)],
                                  box(1))] == [GANG, 3]
    # the scheduler places a gang as one job of the gang's size
    assert keys(decide([gang_spec(g) for g in small], [], box(1, total=4))) == [("a", "GPU-0")]
