"""Turn one results JSON of run.py into docs/benchmarks-peers.md and its PNG plot.

    python bench/peers/report.py bench/results/peers-YYYYmmdd-HHMMSS.json

The hand-written analysis (what pillbox lost to, and the profile that explains it) lives in
bench/peers/analysis.md and is copied into the report as it is.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(REPO, "docs", "benchmarks-peers.md")
PNG = os.path.join(REPO, "docs", "img", "benchmarks-peers.png")
ANALYSIS = os.path.join(HERE, "analysis.md")

PEERS = ("celery", "rq", "dramatiq", "huey", "procrastinate")
PILLBOX = ("pillbox-sqlite", "pillbox-postgres")
EN = "\u2013"  # en dash, for ranges


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "error" not in r]


def _vals(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in _ok(rows) if isinstance(r.get(key), int | float)]


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "—"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def med_spread(values: list[float], digits: int = 0, unit: str = "") -> str:
    """'median (min-max)' with an en dash, or the single value."""
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{_fmt(med, digits)}{unit}"
    lo, hi = _fmt(min(values), digits), _fmt(max(values), digits)
    return f"**{_fmt(med, digits)}**{unit} ({lo}{EN}{hi})"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def write(path: str) -> None:
    with open(path) as f:
        doc = json.load(f)
    os.makedirs(os.path.dirname(PNG), exist_ok=True)
    plot(doc, PNG)
    text = render(doc, os.path.relpath(path, REPO))
    with open(DOC, "w") as f:
        f.write(text)
    print(f"report: {os.path.relpath(DOC, REPO)}, plot: {os.path.relpath(PNG, REPO)}")


# -- plot ----------------------------------------------------------------------------------------
def plot(doc: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = doc["systems"]
    keys = list(systems)
    labels = [systems[k]["label"].replace(" (", "\n(") for k in keys]
    colors = ["#c44e52" if k.startswith("pillbox") else "#4c72b0" for k in keys]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    res = doc["results"]

    tp = res.get("throughput", {})
    meds, lo, hi = [], [], []
    for k in keys:
        v = _vals(tp.get(k, []), "jobs_per_s")
        m = median(v) or 0.0
        meds.append(m)
        lo.append(m - min(v) if v else 0)
        hi.append(max(v) - m if v else 0)
    ax1.bar(range(len(keys)), meds, yerr=[lo, hi], color=colors, capsize=4)
    ax1.set_xticks(range(len(keys)), labels, fontsize=8)
    ax1.set_ylabel(f"jobs/s (median, bars = min{EN}max)")
    ax1.set_title(f"Throughput: {doc['params']['jobs']:,} no-op jobs, from worker start")
    for i, m in enumerate(meds):
        ax1.text(i, m, f"{m:,.0f}", ha="center", va="bottom", fontsize=8)

    lat = res.get("latency", {})
    width = 0.38
    for j, (key, name, shade) in enumerate((("p50_ms", "p50", 0.55), ("p99_ms", "p99", 1.0))):
        meds, lo, hi = [], [], []
        for k in keys:
            v = _vals(lat.get(k, []), key)
            m = median(v) or float("nan")
            meds.append(m)
            lo.append(m - min(v) if v else 0)
            hi.append(max(v) - m if v else 0)
        xs = [i + (j - 0.5) * width for i in range(len(keys))]
        ax2.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=name,
                color=[c for c in colors], alpha=shade)
    ax2.set_yscale("log")
    ax2.axhline(10, color="gray", linestyle="--", linewidth=1)
    ax2.text(len(keys) - 0.5, 10, "10 ms", ha="right", va="bottom", fontsize=8, color="gray")
    ax2.set_xticks(range(len(keys)), labels, fontsize=8)
    ax2.set_ylabel("publish → handler start, ms (log)")
    ax2.set_title(f"Latency at {doc['params']['latency_rate']:.0f} jobs/s: p50 (light), "
                  "p99 (dark)")
    fig.suptitle("pillbox (red) and the peers (blue), same machine, same run", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- markdown ------------------------------------------------------------------------------------
def render(doc: dict[str, Any], json_rel: str) -> str:
    s = doc["systems"]
    res = doc["results"]
    p = doc["params"]
    v = doc["versions"]
    out: list[str] = []
    w = out.append
    link = os.path.relpath(os.path.join(REPO, json_rel), os.path.dirname(DOC))
    w("# pillbox and the tools users would pick instead: side by side\n")
    w("Celery, RQ, Dramatiq, Huey and Procrastinate, and pillbox on SQLite and on PostgreSQL, "
      "run one after another in the same run, on the same workloads, against the real Redis "
      "and PostgreSQL on the 2-core development VM. Every number below was measured by the "
      f"command below in that run (raw results: [`{json_rel}`]({link})); none is "
      "copied from elsewhere. The method follows the earlier peer study in "
      "`shared/research/peers.md` (job lines appended to an O_APPEND file, a restart-on-exit "
      "supervisor around each worker).\n")
    w("```console\n$ python bench/peers/run.py\n```\n")
    w(f"That run took **{doc['elapsed_s'] / 60:.1f} minutes** "
      f"({doc['started_utc']} → {doc.get('finished_utc', '?')}). The first run creates "
      "`bench/peers/.venv` (git-ignored) with the peers, matplotlib and py-spy, and pillbox "
      "installed editable; none of them is a pillbox dependency. `--quick` is a 10-minute "
      "smoke run (small counts, one rep); `--systems` and `--workloads` pick a subset; "
      "`python bench/peers/report.py FILE.json` re-renders this page.\n")
    w("![throughput and latency](img/benchmarks-peers.png)\n")
    out += aims(doc)
    out += setup(doc, v)
    out += throughput(doc)
    out += latency(doc)
    out += poison(doc)
    out += hang(doc)
    out += recovery(doc)
    for note in doc.get("notes", []):
        w(f"> {note}\n")
    if os.path.exists(ANALYSIS):
        with open(ANALYSIS) as f:
            w(f.read().rstrip() + "\n")
    out += noise(doc)
    _ = (s, res, p)
    return "\n".join(out)


def _label(doc: dict[str, Any], key: str) -> str:
    label = doc["systems"][key]["label"]
    return f"**{label}**" if key.startswith("pillbox") else label


def aims(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    lines = ["## Our aims, and whether this run met them\n",
             "| aim | measured | met? |", "|---|---|---|"]
    tp = res.get("throughput", {})
    peers = {k: median(_vals(tp.get(k, []), "jobs_per_s")) for k in PEERS if k in tp}
    peers = {k: x for k, x in peers.items() if x is not None}
    pg = median(_vals(tp.get("pillbox-postgres", []), "jobs_per_s"))
    if peers and pg is not None:
        best = max(peers, key=lambda k: peers[k])
        lines.append(f"| pillbox on PostgreSQL at least matches the fastest peer's throughput "
                     f"| pillbox/PostgreSQL {pg:,.0f} jobs/s; fastest peer "
                     f"{doc['systems'][best]['label']} {peers[best]:,.0f} jobs/s "
                     f"({pg / peers[best]:.0%}) | {'yes' if pg >= peers[best] else '**no**'} |")
    lat = res.get("latency", {})
    p99 = median(_vals(lat.get("pillbox-postgres", []), "p99_ms"))
    if p99 is not None:
        lines.append(f"| p99 publish-to-start under 10 ms on PostgreSQL (LISTEN/NOTIFY) | "
                     f"{p99:.1f} ms (median of the runs' p99) | "
                     f"{'yes' if p99 < 10 else '**no**'} |")
    po = res.get("poison", {})
    if po:
        clean = []
        for k, rows in po.items():
            rows = _ok(rows)
            if rows and all(r["good_completed"] == r["good"] and r["good_duplicates"] == 0
                            and r["fate"]["verdict"] == "quarantined"
                            and r["fate"]["job_traceback_kept"] for r in rows):
                clean.append(k)
        only = sorted(clean) and all(k.startswith("pillbox") for k in clean)
        names = ", ".join(doc["systems"][k]["label"] for k in clean) or "none"
        lines.append(f"| pillbox the only one that completes every good job and quarantines the "
                     f"poison job with its traceback | did all three: {names} | "
                     f"{'yes' if only and clean else '**no**'} |")
    lines.append("")
    return lines


def pillbox_code(tree: dict[str, Any]) -> str:
    dirty = tree.get("src_uncommitted_files")
    state = ("src/ clean" if dirty == 0 else
             f"{dirty} uncommitted file(s) in src/" if dirty else "src/ state not recorded")
    return (f"| pillbox code | commit {tree.get('commit', '?')} at the start ({state}; pillbox is "
            "installed editable, so a commit landing during the run would change it) |")


def setup(doc: dict[str, Any], v: dict[str, str]) -> list[str]:
    m = doc["machine"]
    svc = doc["services"]
    lines = ["## Setup\n", "| item | value |", "|---|---|",
             f"| machine | {m['cpus']} vCPU, {m['memory_gib']} GiB, kernel {m['kernel']}; "
             "shared with other engineers' test runs (see [Noise](#noise)) |",
             f"| Python | CPython {v['python']} |",
             pillbox_code(doc.get("pillbox_tree", {})),
             f"| Redis | {svc['redis']} |", f"| PostgreSQL | {svc['postgresql']}; databases "
             "`bench_pillbox` and `bench_procrastinate` on the same server (not `test`, so the "
             "tests other engineers run there never share tables or NOTIFY traffic with us) |",
             f"| SQLite | {svc['sqlite']} (WAL, synchronous=FULL for both Huey and pillbox) |",
             "| versions | " + ", ".join(f"{k} {v[k]}" for k in (
                 "pillbox", "celery", "kombu", "billiard", "rq", "dramatiq", "huey",
                 "procrastinate", "redis", "psycopg", "psycopg-pool") if k in v) + " |",
             "",
             "Every system runs the same job function with **concurrency 2**. For pillbox we "
             "chose `--workers 2` with `concurrency=1` per subscription: two jobs at once, in "
             "two processes, like Celery's prefork pool of 2, so a crash takes out one job's "
             "process only. (pillbox's supervisor also starts its isolation lane, a process "
             "that only runs suspects, and a booted standby worker that only takes over a dead "
             "worker's slot.) Where a tool has the setting, every job gets a 5 s time limit and 3 "
             "attempts in all. On PostgreSQL the harness runs `ANALYZE` after loading the "
             "throughput backlog into the fresh schema, as autovacuum would on a running system: "
             "without it Procrastinate's job fetch ran about 10x slower (a plan without "
             "statistics); pillbox gets the same.\n",
             "| system | worker | time limit | retries |", "|---|---|---|---|"]
    for key, sysd in doc["systems"].items():
        lines.append(f"| {_label(doc, key)} | {sysd['config']} | {sysd['time_limit']} | "
                     f"{sysd['retries']} |")
    lines += ["", "Jobs: a *no-op* job appends one 63-byte line to a file with `os.write`; a "
              "*good* job sleeps 50 ms first. The harness reads those lines to count executions "
              "and duplicates, never the tool's own bookkeeping. Each worker runs under a "
              "restart-on-exit supervisor like systemd's `Restart=always` with its default "
              "`RestartSec=100ms`, so \"root restarts\" counts exits of the tool's own top "
              "process.\n"]
    return lines


def throughput(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    tp = res.get("throughput")
    if not tp:
        return []
    p = doc["params"]
    bulk = res.get("bulk_enqueue", {})
    reps = max(len(r) for r in tp.values())
    lines = [f"## 1. Throughput: {p['jobs']:,} no-op jobs\n",
             f"{_runs(reps)} per system, interleaved (rep 1 of every system, then rep 2, ...); "
             f"**median** (min{EN}max). Enqueue is timed with the worker stopped, one call per job "
             "from one client (`delay`, `enqueue`, `send`, a Huey task call, `defer`, "
             "`app.publish`); a bulk API, where the tool has one, is timed once, separately, "
             f"on another {p['jobs']:,}. Processing runs from the worker's start command to the "
             "last job's end, so it includes start-up; \"steady\" is first job to last job. "
             f"A processing phase is cut off at {p['cap_s']:.0f} s and the rate is then what "
             "got done in that time. CPU is user+sys per job, of the worker's process tree "
             "(start-up included), and of redis-server or of PostgreSQL's background processes "
             "plus the backends of the system's own database. \"Redis commands per job\" is "
             "Redis's `total_commands_processed` divided by the jobs. For PostgreSQL, "
             "`pg_stat_database` commit counts proved unreliable over intervals this short, so "
             "none are shown.\n",
             "| system | enqueue, one call per job (jobs/s) | bulk enqueue (jobs/s) | "
             "processing (jobs/s) | steady (jobs/s) | first job after start (s) | "
             "worker CPU ms/job | broker CPU ms/job | Redis commands per job: enqueue / process | "
             "done |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, rows in tp.items():
        ok = _ok(rows)
        if not ok:
            lines.append(f"| {_label(doc, key)} | error: {rows[0].get('error', '?')} |"
                         " | | | | | | |")
            continue
        b = bulk.get(key, [])
        capped = [r for r in ok if not r.get("finished")]
        got = [r["completed"] for r in capped]
        done = (f"{len(capped)} of {len(ok)} runs cut off at {p['cap_s']:.0f} s, with "
                f"{min(got):,}{EN}{max(got):,} of {p['jobs']:,} done" if capped
                else f"all {p['jobs']:,} in {len(ok)}/{len(ok)} runs")
        dups = sum(r.get("duplicates", 0) for r in ok)
        if dups:
            done += f", {dups} duplicates"
        bulk_txt = (med_spread(_vals(b, "enqueue_per_s")) + f" ({doc['systems'][key]['bulk_api']})"
                    if doc["systems"][key]["bulk_api"] else "no bulk API")
        lines.append(
            f"| {_label(doc, key)} | {med_spread(_vals(ok, 'enqueue_per_s'))} | {bulk_txt} | "
            f"{med_spread(_vals(ok, 'jobs_per_s'))} | {med_spread(_vals(ok, 'steady_jobs_per_s'))}"
            f" | {med_spread(_vals(ok, 'first_job_after_spawn_s'), 1)} | "
            f"{_fmt(median(_vals(ok, 'worker_cpu_ms_per_job')), 2)} | "
            f"{_fmt(median(_vals(ok, 'broker_cpu_ms_per_job')), 2)} | {_ops(ok)} | {done} |")
    lines.append("")
    return lines


def _ops(rows: list[dict[str, Any]]) -> str:
    enq = median(_vals(rows, "enqueue_redis_commands_per_job"))
    proc = median(_vals(rows, "process_redis_commands_per_job"))
    return "—" if enq is None or proc is None else f"{enq:.1f} / {proc:.1f}"


def latency(doc: dict[str, Any]) -> list[str]:
    lat = doc["results"].get("latency")
    if not lat:
        return []
    p = doc["params"]
    reps = max(len(r) for r in lat.values())
    lines = [f"## 2. Latency: publish → handler start at {p['latency_rate']:.0f} jobs/s\n",
             f"{_runs(reps)} per system of {p['latency_jobs']} no-op jobs published at a steady "
             f"{p['latency_rate']:.0f} jobs/s to an idle, warmed-up worker. Latency is from just "
             "before the publish call to the first line of the handler, both `time.time()` on "
             "this machine; the last two columns split it into the publish call itself and "
             "the wait from its return to the handler's start. The rate is light for every "
             "tool (RQ, the slowest, processed about 40 jobs/s flat out here). "
             f"Median of the runs' percentiles (min{EN}max); \"pooled\" is over "
             "all runs' samples together.\n",
             "| system | p50 (ms) | p99 (ms) | pooled p50 / p99 / max (ms) "
             "| publish call p50 / p99 (ms) | after the call returned p50 / p99 (ms) |",
             "|---|---|---|---|---|---|"]
    for key, rows in lat.items():
        ok = _ok(rows)
        if not ok:
            lines.append(f"| {_label(doc, key)} | error: {rows[0].get('error', '?')} | | | | |")
            continue
        pooled = sorted(x for r in ok for x in r["samples_ms"])
        pct = _pct(pooled)
        lines.append(f"| {_label(doc, key)} | {med_spread(_vals(ok, 'p50_ms'), 1)} | "
                     f"{med_spread(_vals(ok, 'p99_ms'), 1)} | {pct(0.5):.1f} / {pct(0.99):.1f} / "
                     f"{pooled[-1]:.1f} | {_fmt(median(_vals(ok, 'publish_call_p50_ms')), 1)} / "
                     f"{_fmt(median(_vals(ok, 'publish_call_p99_ms')), 1)} | "
                     f"{_fmt(median(_vals(ok, 'after_return_p50_ms')), 1)} / "
                     f"{_fmt(median(_vals(ok, 'after_return_p99_ms')), 1)} |")
    lines.append("")
    return lines


def _pct(ordered: list[float]) -> Any:
    def at(q: float) -> float:
        if not ordered:
            return float("nan")
        k = (len(ordered) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
    return at


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"{n} runs"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def poison(doc: dict[str, Any]) -> list[str]:
    po = doc["results"].get("poison")
    if not po:
        return []
    p = doc["params"]
    reps = max(len(r) for r in po.values())
    lines = [f"## 3. Poison pill: 1 segfaulting job among {p['poison_good']} good ones\n",
             f"{_runs(reps)} per system (the outcome is a behaviour, not a timing; the earlier "
             "study saw the same behaviour on every repeat). The poison job "
             f"(`ctypes.string_at(0)`, SIGSEGV in C, no Python exception) is number "
             f"{p['poison_position']} of {p['poison_good'] + 1}; good jobs sleep 50 ms. The run "
             f"ends {p['poison_settle_s']:.0f} s after the last good job, or "
             f"{p['poison_window_s']:.0f} s after the worker's start. \"Job traceback kept\": the "
             "tool's own record for the job holds the job's Python frame (`poison_body`); "
             "\"in log\" is the same frame anywhere in the worker's output.\n",
             "| system | good done | dup | poison runs | what became of it | where the tool keeps "
             "it | job traceback kept | in log | root restarts |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, rows in po.items():
        for r in rows:
            if "error" in r:
                lines.append(f"| {_label(doc, key)} | error: {r['error']} | | | | | | | |")
                continue
            f = r["fate"]
            lines.append(
                f"| {_label(doc, key)} | {r['good_completed']}/{r['good']} | "
                f"{r['good_duplicates']} | {r['poison_attempts']} (at "
                f"{', '.join(f'{t:.1f}' for t in r['poison_attempt_times_s'])} s) | "
                f"**{f['verdict']}**: {f['detail']} | {f['evidence'] or '—'} | "
                f"{_yes(f['job_traceback_kept'])} | {_yes(r['job_traceback_in_worker_log'])} | "
                f"{r['root_restarts']} |")
    lines.append("")
    return lines


def hang(doc: dict[str, Any]) -> list[str]:
    hg = doc["results"].get("hang")
    if not hg:
        return []
    p = doc["params"]
    lines = [f"## 4. Hang: 1 job sleeping forever, first in line, then {p['hang_good']} good "
             "ones\n",
             f"Per-job time limit 5 s where the tool has one; a {p['hang_window_s']:.0f} s window "
             "from the worker's start, then SIGTERM (SIGKILL after 10 s). \"Hang runs\" counts "
             "the starts of the hanging job.\n",
             "| system | good done | all good done at (s) | hang runs (at s) | what became of it "
             "| job traceback kept | stopped on SIGTERM |", "|---|---|---|---|---|---|---|"]
    for key, rows in hg.items():
        for r in rows:
            if "error" in r:
                lines.append(f"| {_label(doc, key)} | error: {r['error']} | | | | | |")
                continue
            f = r["fate"]
            stop = r["stop"]
            stopped = (f"yes, {stop['stop_s']:.1f} s" if stop["graceful"]
                       else "**no**: SIGKILL after 10 s")
            lines.append(
                f"| {_label(doc, key)} | {r['good_completed']}/{r['good']} | "
                f"{_fmt(r['all_good_done_s'], 1)} | {r['hang_attempts']} ("
                f"{', '.join(f'{t:.1f}' for t in r['hang_attempt_times_s'])}) | "
                f"**{f['verdict']}**: {f['detail']} | {_yes(f['job_traceback_kept'])} | "
                f"{stopped} |")
    lines.append("")
    return lines


def recovery(doc: dict[str, Any]) -> list[str]:
    rc = doc["results"].get("recovery")
    if not rc:
        return []
    p = doc["params"]
    reps = max(len(r) for r in rc.values())
    lines = ["## 5. Recovery: SIGKILL of the worker processes → next job done\n",
             f"{_runs(reps)} per system. No-op jobs stream in at {p['recovery_rate']:.0f}/s; "
             f"{p['recovery_before_s']:.0f} s in, the harness SIGKILLs **every process that runs "
             "jobs** (so a surviving sibling cannot hide the recovery): Celery's two pool "
             "children, RQ's two workers, Dramatiq's two worker processes, Huey's two worker "
             "processes, Procrastinate's single process, pillbox's two worker children. Recovery "
             "is the time from the kill to the end of the first job that started after it, in a "
             "process that had run no job before the kill and was not a killed process or a "
             "child one had forked (an RQ work-horse); an idle warm spare (pillbox's standby "
             "worker) counts. \"Every killed process replaced\" is when as many distinct such "
             "processes as were killed have each done a job (for RQ, new workers, the parents "
             "of the work-horses). At the kill the harness also publishes a burst of "
             f"{p.get('recovery_burst', 0)} jobs, so work waits the moment anything can take it. "
             "\"Not done\" counts jobs published before / after the kill that "
             f"were not done {p['recovery_settle_s']:.0f} s after the stream ended.\n",
             "| system | recovery: first job done (s) | every killed process replaced (s) | "
             "who brought it back | not done, per run (before / after the kill) |",
             "|---|---|---|---|---|"]
    who = {"celery": "Celery's main process forks new pool children",
           "rq": "the worker-pool process starts new workers",
           "dramatiq": "nobody inside: the main process shuts down; the external supervisor "
                       "restarts it",
           "huey": "the consumer's health check (every 10 s by default) restarts workers",
           "procrastinate": "nobody inside (the whole worker died); the external supervisor",
           "pillbox-sqlite": "pillbox's supervisor: its booted standby takes one dead "
                             "worker's slot; the other slot gets a fresh process",
           "pillbox-postgres": "pillbox's supervisor: its booted standby takes one dead "
                               "worker's slot; the other slot gets a fresh process"}
    for key, rows in rc.items():
        ok = _ok(rows)
        if not ok:
            lines.append(f"| {_label(doc, key)} | error: {rows[0].get('error', '?')} | | | |")
            continue
        nd_b = [r.get("published_before_kill_not_done", 0) for r in ok]
        nd_a = [r.get("published_after_kill_not_done", 0) for r in ok]
        lines.append(f"| {_label(doc, key)} | {med_spread(_vals(ok, 'recovery_s'), 2)} | "
                     f"{med_spread(_vals(ok, 'all_replaced_s'), 2)} | {who.get(key, '')} | "
                     f"{', '.join(map(str, nd_b))} / {', '.join(map(str, nd_a))} |")
    lines.append("")
    return lines


def noise(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    loads = [r.get("loadavg_1m_before") for w in res.values() for rows in w.values()
             for r in rows if isinstance(r.get("loadavg_1m_before"), int | float)]
    busy = [r.get("machine_busy_cores") for rows in res.get("throughput", {}).values()
            for r in rows if isinstance(r.get("machine_busy_cores"), int | float)]
    lines = ["## Noise\n",
             "This is a shared 2-vCPU VM, and other engineers ran test suites and benchmarks on "
             "it during this run. The 1-minute load average before each step ranged "
             f"{min(loads):.1f}{EN}{max(loads):.1f} (median {statistics.median(loads):.1f}); "
             if loads else "",
             f"during the throughput processing phases the whole machine was "
             f"{min(busy):.2f}{EN}{max(busy):.2f} cores busy out of 2. "
             if busy else "",
             "So the absolute numbers are low and move by tens of percent between runs; compare "
             "systems within a rep (they were interleaved for that reason) and by ratio. The "
             "raw JSON keeps every run with its load average.\n"]
    return ["".join(lines[:1]), "".join(lines[1:])]


if __name__ == "__main__":
    write(sys.argv[1])
