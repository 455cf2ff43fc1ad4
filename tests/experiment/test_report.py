"""The report: Markdown and one self-contained HTML page with the figures; Chromium draws it."""

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _harness_runs import cli, stored_run

from labelsmooth.experiment.report import write_report


def _runs():
    import random

    rng = random.Random(0)
    runs = []
    for setting in (None, 0.95, 0.9, 0.8):
        for seed in range(3):
            conf = [(i + 0.5) / 15 for i in range(15)]
            acc = [min(1.0, c + rng.uniform(-0.1, 0.1)) for c in conf]
            count = [0] * 5 + [rng.randint(1, 30) for _ in range(10)]
            metrics = {
                "accuracy": 0.95 + rng.uniform(-0.01, 0.01),
                "nll": 0.2,
                "ece": 0.03,
                "logit_gap": 4.0 + rng.uniform(0, 1),
            }
            reliability = {
                "count": count,
                "accuracy": [a if n else None for a, n in zip(acc, count)],
                "confidence": [c if n else None for c, n in zip(conf, count)],
            }
            metrics.update(ts_nll=0.15, ts_ece=0.02, temperature=1.3, val_accuracy=0.95, val_nll=0.2)
            y = np.arange(200) % 10
            right = rng.sample(range(200), int(metrics["accuracy"] * 200))
            pred = (y + 1) % 10
            pred[right] = y[right]
            logits = np.zeros((200, 10), dtype=np.float16)
            logits[np.arange(200), pred] = 3.0
            predictions = {"test": {"logits": logits, "labels": y}, "val": {"logits": logits, "labels": y}}
            extra = {"reliability_ts": reliability, "settings": {"num_parameters": 85002},
                     "data": {"train_size": 1077, "val_size": 270, "test_size": 200}}  # fmt: skip
            runs.append(
                stored_run("digits", seed, metrics, gamma=setting, reliability=reliability, timings={"total": 1.0},
                           extra=extra, predictions=predictions)
            )  # fmt: skip
    return runs


def _predictions(runs):
    return {r["key"]: r["predictions"] for r in runs}


def test_report_writes_markdown_html_and_figures(tmp_path):
    sweeps = [
        {
            "id": 1,
            "command": "labelsmooth sweep --datasets digits",
            "backend": "local",
            "workers": 2,
            "runs": 12,
            "machine": {"cpu": "test cpu", "cpu_count": 2, "threads_per_run": 1},
            "wall_s": 12.0,
        }
    ]
    runs = _runs()
    out = write_report(runs, sweeps, str(tmp_path), predictions=_predictions(runs))
    md = Path(out["markdown"]).read_text()
    assert "digits: no setting beats cross-entropy significantly" in md or "digits: γ" in md
    assert "“±” is the half-width of the 95% t-interval" in md  # the report says what ± means
    assert "Model `mlp` (85,002 parameters), 5 epochs, batch size 128, adamw" in md  # the set-up
    assert "Splits: train 1077, validation 270" in md and "Hyperparameters selected on validation" in md
    assert "| smoothing selected on validation (split 0: γ = " in md
    assert "| γ = 0.9 | +" in md  # a calibration-difference row with its CI
    for png in ("digits-accuracy.png", "digits-ece.png", "digits-reliability.png", "digits-logit-gap.png"):
        assert f"]({png})" in md
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| γ = 0.9 | 3 |" in md and "labelsmooth sweep --datasets digits" in md
    assert "| p bootstrap (Holm) |" in md and "| p Wilcoxon (Holm) |" in md
    assert "Wilcoxon signed-rank test not shown: 3 paired units and 4 settings" in md  # absent, and why
    page = Path(out["html"]).read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must be self-contained"


def test_report_cli(tmp_path):
    from labelsmooth.experiment.store import Store

    with Store(tmp_path / "s.sqlite") as s:
        for r in _runs():
            s.put(r)
    cmd, env = cli("report", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "rep"))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digits: ") and (tmp_path / "rep" / "report.html").exists()


def test_report_cli_markdown_elsewhere_with_notes(tmp_path):
    # docs/results.md is made this way: figures in a folder, the Markdown beside it, a hand-written section
    from labelsmooth.experiment.store import Store

    with Store(tmp_path / "s.sqlite") as s:
        for r in _runs():
            s.put(r)
    (tmp_path / "notes.md").write_text("## Against the published numbers\n\nOur words.\n")
    md_path = tmp_path / "docs" / "results.md"
    md_path.parent.mkdir()
    cmd, env = cli("report", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "docs" / "results"),
                   "--markdown", str(md_path), "--notes", str(tmp_path / "notes.md"))  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    md = md_path.read_text()
    assert "](results/digits-accuracy.png)" in md and (tmp_path / "docs" / "results" / "digits-accuracy.png").exists()
    assert md.index("## Verdicts") < md.index("## Against the published numbers\n\nOur words.") < md.index("## digits")
    assert not (tmp_path / "docs" / "results" / "report.md").exists()


def _chromium_screenshot(chromium, page, shot, profile):
    """Screenshot ``page`` in headless Chromium; returns the pixels and the console lines it logged."""
    from matplotlib.image import imread

    r = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1280,2400", "file://" + str(page)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert Path(shot).exists(), r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return imread(str(shot))[..., :3], console


@pytest.mark.slow
def test_chromium_draws_the_report(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    bad = tmp_path / "bad.html"  # control: the console check does see a script error
    bad.write_text("<html><body><p>x</p><script>console.error('boom'); missing();</script></body></html>")
    _, console = _chromium_screenshot(chromium, bad, tmp_path / "bad.png", tmp_path / "profile-bad")
    assert any("boom" in line for line in console) and any("Uncaught" in line for line in console)

    runs = _runs()
    out = write_report(runs, [], str(tmp_path / "rep"), predictions=_predictions(runs))
    shot = tmp_path / "shot.png"
    pixels, console = _chromium_screenshot(chromium, out["html"], shot, tmp_path / "profile")
    assert console == [], console
    assert pixels.std() > 0.05, "the screenshot is blank"
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.01  # some dark ink (text, axes) was drawn
    if os.environ.get("LABELSMOOTH_SCREENSHOT"):
        shutil.copy(shot, os.environ["LABELSMOOTH_SCREENSHOT"])
