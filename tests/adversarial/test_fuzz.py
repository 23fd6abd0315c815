"""A short run of the fuzzer: hostile and careless input never crashes, never escapes as an
undocumented exception, never spends budget when refused, and never leaves the ledger and the
log disagreeing (benchmarks/fuzz.py runs the full 10,000 inputs)."""

import json

from benchmarks.fuzz import main


def test_short_fuzz_run_finds_nothing(capsys):
    main(["--json", "--inputs", "200", "--seed", "8", "--subprocesses", "2"])
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == 200
    assert not report["setup_errors"]
    failures = [
        f"{f['count']}x {f['kind']} {f['entry']}: {f['exc_type']} at {f['where']} "
        f"(input #{f['index']}: {f['input'][:160]})"
        for f in report["distinct_failures"]
    ]
    summary = {
        k: report[k]
        for k in (
            "crashes",
            "undocumented_exceptions",
            "budget_spent_on_refusals",
            "log_gaps",
            "policy_violations",
        )
    }
    assert summary == dict.fromkeys(summary, 0), (summary, failures)
