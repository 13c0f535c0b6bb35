"""The growth verdict on recorded-shape observations (lab/probe/direct/fds.py: growth), without
running anything: leaks fail with their figure, noise, one-off jumps and slow modules do not."""

from __future__ import annotations

from lab.checks.growth import BOUND_KIB, MINIMUM, judge


def run(
    rss_per_1000: float = 0.0,
    heap_per_1000: float = 0.0,
    done: int = 20000,
    threads: list[int] | None = None,
    maps: list[int] | None = None,
    jump_at: int | None = None,
) -> dict:
    """Samples every 1,000 lookups, growing linearly (KiB per 1,000); JUMP_AT adds one
    512 KiB step there (a cache filled once)."""
    samples = []
    for i, n in enumerate(range(0, done + 1, 1000)):
        jump = 512 if jump_at is not None and n >= jump_at else 0
        samples.append(
            [
                n,
                {
                    "rss": int(19000 + rss_per_1000 * n / 1000 + jump),
                    "heap": int(5_000_000 + heap_per_1000 * 1024 * n / 1000 + jump * 1024),
                    "threads": threads[i] if threads else 1,
                    "maps": maps[i] if maps else 97,
                },
            ]
        )
    return {
        "calls": 163,
        "warmup": 1000,
        "per_call": 1.5e-5,
        "asked": 20000,
        "done": done,
        "samples": samples,
    }


def test_a_sound_module_passes_with_its_figures():
    got = judge(run(rss_per_1000=1.4))
    assert got.status == "pass", got.reason
    assert got.details["per_1000"]["rss_kib"] == 1.4 and got.details["per_1000"]["heap_bytes"] == 0
    assert "20,000 mixed lookups" in got.reason and "+1.4 KiB" in got.reason


def test_one_leaked_chunk_per_miss_fails_on_the_heap_even_when_rss_stays():
    # memleaklab's figures: the leak reused memory already resident
    got = judge(run(heap_per_1000=15.4), "memleaklab", "pyama")
    assert got.status == "fail"
    assert round(got.details["per_1000"]["heap_bytes"] / 1024, 1) == 15.4
    assert "heap in use grew 15.4 KiB per 1,000 lookups" in got.reason and "resident" not in got.reason
    assert "valgrind --leak-check=full getent -s memleaklab passwd" in got.reproduce


def test_resident_growth_past_the_bound_fails():
    got = judge(run(rss_per_1000=31.2, heap_per_1000=31.3))
    assert got.status == "fail" and "resident memory grew 31.2 KiB per 1,000" in got.reason


def test_growth_just_under_the_bound_passes():
    assert judge(run(rss_per_1000=BOUND_KIB - 0.5, heap_per_1000=BOUND_KIB - 0.5)).status == "pass"


def test_a_one_off_jump_is_not_a_leak():
    got = judge(run(jump_at=4000))  # 512 KiB once: 25 KiB per 1,000 overall, nothing after
    assert got.status == "pass", got.reason


def test_threads_that_keep_coming_fail():
    got = judge(run(threads=list(range(1, 22))))
    assert got.status == "fail" and "threads 1 -> 21" in got.reason


def test_a_runtime_adding_a_worker_thread_now_and_then_is_not_growth():
    # golab in a loaded run: Go's scheduler went 7 -> 9 threads, one in each half
    assert judge(run(threads=[7] * 9 + [8] * 6 + [9] * 6)).status == "pass"


def test_one_thread_started_once_is_not_growth():
    assert judge(run(threads=[1] + [2] * 20)).status == "pass"


def test_mappings_that_keep_coming_fail():
    got = judge(run(maps=[97 + i for i in range(21)]))
    assert got.status == "fail" and "mappings 97 -> 117" in got.reason


def test_a_go_runtime_is_judged_on_the_c_heap_only():
    # golab: the Go heap grew RSS 344 KiB per 1,000 and three arenas in 20,000 lookups, then levels off
    got = judge(run(rss_per_1000=344.6, maps=[148] * 10 + [151] * 11), collected=True)
    assert got.status == "pass" and "not judged: a Go runtime" in got.reason
    assert judge(run(rss_per_1000=344.6, heap_per_1000=20.0), collected=True).status == "fail"


def test_a_slow_module_is_skipped_with_its_per_call_time():
    obs = {
        "calls": 163,
        "warmup": 1,
        "per_call": 0.301,
        "asked": 20000,
        "done": 0,
        "samples": [[0, {"rss": 1, "heap": 1, "threads": 1, "maps": 1}]],
    }
    got = judge(obs)
    assert got.status == "skip" and "301.0 ms each" in got.reason and f"{MINIMUM:,}" in got.reason


def test_a_run_cut_short_is_judged_and_says_so():
    got = judge(run(done=15000))
    assert got.status == "pass" and "15,000 (of 20,000: the 1 s budget ran out)" in got.reason


def test_the_reproducer_loops_over_the_kinds_and_says_what_it_leaves_out():
    got = judge(run(heap_per_1000=15.4), "memleaklab", "pyama")
    program = got.reproduce.split("python3 -c ", 1)[1].split(", then with")[0]
    import shlex

    code = shlex.split(program)[0]
    compile(code, "reproduce", "exec")
    assert "getgrgid" in code and "getpwuid" in code and '"pyama".encode()' in code
    assert "shadow and initgroups" in got.reproduce
