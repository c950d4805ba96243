"""report.html in a real headless browser (Debian's chromium; `make test-browser` installs it):
the page renders, every image loads, and the console shows no error."""

import json
import shutil
import subprocess

import pytest

from shiftalign.report.html import write_report
from shiftalign.report.plots import difference_plot, gold_vs_kl, training_curves

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', imgs.length + '/' + ok);
});
</script>"""


def _chromium(tmp_path, *args) -> list[str]:
    """A headless chromium command that reaches nothing outside the page, its profile under ``tmp_path``."""
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args]


def _report(tmp_path):
    metrics = tmp_path / "m.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 0.7 - 0.05 * s}) + "\n" for s in range(1, 6)))
    rows = [{"arm": n, "gold": g, "diff": g - 0.5, "ci95": [g - 0.55, g - 0.45], "kl": k, "kl_ci95": [k * 0.8, k * 1.2]}
            for n, g, k in [("base", 0.5, 0.0), ("dpo", 0.6, 0.2)]]
    return write_report(tmp_path / "report.html", "test report", ["`dpo` is best: +0.1 [+0.05, +0.15].", "a line"],
                        [("Arms", ["arm", "gold reward"], [["dpo", "0.6"]]), ("Stages", ["stage", "time (min)"],
                                                                          [["a", "0.1"]])],
                        [("curves", training_curves({"dpo": metrics})), ("difference", difference_plot(rows, "base")),
                         ("kl", gold_vs_kl(rows, "base"))], ["a note"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test-browser installs it)")
def test_report_renders_images_load_no_console_error(tmp_path):
    page = _report(tmp_path)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    cmd = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<h1>test report</h1>" in dom
    assert 'data-images="3/3"' in dom, dom[:500]
    console = [l for l in proc.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert console == [], console
    shot = subprocess.run([*cmd[:-2], f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1000,2400",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "shot.png").stat().st_size > 10_000


FITS = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const over = Array.from(document.querySelectorAll('table')).filter(t => t.getBoundingClientRect().right > width);
  document.body.setAttribute('data-fits', over.length + ' over, page ' + document.documentElement.scrollWidth +
                             ' of ' + width);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test-browser installs it)")
def test_the_arms_tables_of_a_real_experiment_fit_a_1280_pixel_window(tmp_path):
    """The tables the report builds from a stored experiment's rows (tests/fixtures/experiment_small, every
    column filled) stay inside a 1280-px window: no table runs off its right edge."""
    from pathlib import Path

    from shiftalign.experiment.tables import arms_tables

    rows = json.loads((Path(__file__).parent / "fixtures" / "experiment_small" / "expected_lifted.json").read_text())
    tables = arms_tables(rows["rows"], "dpo_source", "initial")
    assert len(tables) == 3 and all(len(t[2]) for t in tables)
    page = write_report(tmp_path / "report.html", "fit", rows["verdict"], tables, [], [])
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", FITS + "</body>"))
    proc = subprocess.run(_chromium(tmp_path, "--window-size=1280,2000", "--hide-scrollbars", "--dump-dom",
                                    probe.as_uri()), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fits = proc.stdout.split('data-fits="', 1)[1].split('"', 1)[0]
    over, _, sizes = fits.partition(" over, page ")
    page_width, _, window = sizes.partition(" of ")
    assert over == "0" and int(page_width) <= int(window) == 1280, fits
