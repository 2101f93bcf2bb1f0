"""benchmarks/real_size_smoke.py at the tiny size: the run it documents, and the report it prints (the real
size needs about 10 GiB and minutes; it is run by hand, not by tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_trains_generates_and_reports_each_part():
    command = [sys.executable, "benchmarks/real_size_smoke.py", "--model-type", "tiny", "--threads", "1"]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["precision"] == "bf16" and report["threads"] == 1
    assert report["build_s"] >= 0 and report["step_s"] > 0 and report["generate_s"] > 0
    assert report["peak_rss_bytes"] > 0
    # the style terms' cost, timed in the same process: LM only, the probe at its share, on every row
    terms = report["style_terms"]
    assert set(terms["step_s"]) == {"lm_only", "probe_default_share", "probe_every_labelled_row"}
    assert all(t > 0 for t in terms["step_s"].values()) and terms["ratio_to_lm_only"]["lm_only"] == 1.0
    assert terms["probed_rows"] == {"probe_default_share": 1, "probe_every_labelled_row": 2}
    assert len(report["generated"]) == 1 and len(report["answers"]) == 1
    params = report["params"]
    assert report["total_params"] == sum(p["total"] for p in params.values())
    assert report["trainable_params"] == sum(p["trainable"] for p in params.values())
    assert all(params[part]["trainable"] == 0 for part in ("visual_encoder", "opt_model", "style_encoder"))
    trained = ("Qformer", "query_tokens", "opt_proj", "prompt_mapper", "kv_modulation", "style_head")
    assert all(params[part]["trainable"] == params[part]["total"] > 0 for part in trained)
    assert f"params opt_model: {params['opt_model']['total']:,} total, 0 trainable" in result.stdout
