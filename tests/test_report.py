"""`gcp-robust report`, `table --format json`, `table --published` and `export --format robustbench`
on a real store (the browser half is tests/test_report_browser.py)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from conftest import run_cli_in_process
from report_store import build_store, resolve, table_json

from robustbench_gcp.report.robustbench import ATTACK_FIELD, CORRUPTION_FIELD, FIELDS, check_model_info


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    result = run_cli_in_process("report", "--db", str(store), "--out", str(out))
    assert result.returncode == 0 and result.stdout.startswith(f"wrote {out}"), result.stderr
    return out.read_text()


class _Cells(HTMLParser):
    """Every number cell (its data-src, data-value and text), every URL attribute and the headers."""

    def __init__(self) -> None:
        super().__init__()
        self.cells, self.urls, self.headers, self._open, self._header = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [value for key, value in attrs.items() if key in ("src", "href") and value]
        if tag == "td" and "data-src" in attrs:
            self._open = {"src": json.loads(attrs["data-src"]), "value": attrs["data-value"], "text": ""}
        if tag == "th":
            self._header = ""

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data
        if self._header is not None:
            self._header += data

    def handle_endtag(self, tag):
        if tag == "td" and self._open is not None:
            self.cells.append(self._open)
            self._open = None
        if tag == "th" and self._header is not None:
            self.headers.append(self._header)
            self._header = None


def _parsed(page: str) -> _Cells:
    parser = _Cells()
    parser.feed(page)
    return parser


def test_every_number_on_the_page_is_the_table_json_one(store, page):
    data = table_json(store)
    cells = _parsed(page).cells
    kinds = {run["kind"] for run in data["runs"]}
    assert kinds == {"corruption", "attack", "perturbation"} and len(data["pairs"]) == 2
    assert len(cells) > 100
    for cell in cells:
        value = resolve(data, cell["src"])
        assert repr(value) == cell["value"], cell
        shown = cell["text"].split(" [")[0]
        scale = 100 if any(key in cell["src"] for key in ("flip_probability", "mean_flip_probability")) else 1
        assert shown == (str(value) if isinstance(value, int) else f"{value * scale:.2f}"), cell
    # every interval of the summaries is on the page as the stored bounds
    for index, run in enumerate(data["runs"]):
        if run["kind"] == "corruption":
            low, high = run["summary"]["clean_error_ci"]
            clean = next(c for c in cells if c["src"] == ["runs", index, "summary", "clean_error"])
            assert clean["text"] == f"{run['summary']['clean_error']:.2f} [{low:.2f}, {high:.2f}]"
    # the AutoAttack stages and the worst case of both models
    attacks = {tuple(c["src"][3:5]) for c in cells if c["src"][3] in ("robust_accuracy", "worst_case")}
    assert ("robust_accuracy", "autoattack/square") in attacks and ("worst_case", "1/255") in attacks


def test_the_page_is_self_contained(page):
    parsed = _parsed(page)
    assert not [url for url in parsed.urls if not url.startswith("#")], parsed.urls
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<svg" in page and page.count("<figure>") == 2 and "<link" not in page and "<script src" not in page
    embedded = page.split('<script type="application/json" id="report-data">')[1].split("</script>")[0]
    assert {run["id"] for run in json.loads(embedded)["runs"]} == {1, 2, 3, 4, 5}


def test_published_numbers_appear_for_seed_checkpoints_only(store, page):
    data = table_json(store)
    by_model = {(run["model"], run["kind"]): run for run in data["runs"]}
    seed = by_model["CIFAR10_ResNet20_GAP", "corruption"]["published"]
    assert seed["values"] == {"clean_error": 8.27} and seed["checkpoint"] == "CIFAR10_ResNet20_GAP"
    assert seed["differences"]["clean_error"] == round(by_model["CIFAR10_ResNet20_GAP", "corruption"]["summary"]
                                                       ["clean_error"] - 8.27, 4)
    assert by_model["cifar_resnet20_gcp", "corruption"]["published"] is None  # random weights: no seed checkpoint
    published = [c for c in _parsed(page).cells if "published" in c["src"]]
    assert published and {c["src"][1] for c in published} <= {
        i for i, run in enumerate(data["runs"]) if run["model"] == "CIFAR10_ResNet20_GAP"}
    assert "clean error (%), published" in _parsed(page).headers
    table = run_cli_in_process("table", "--db", str(store), "--published", "--run", "1", "--run", "3")
    rows = {line.split("|")[1].strip(): line for line in table.stdout.splitlines() if line.startswith("| ")}
    assert "clean top-1, published" in rows["model"] and "91.73" in rows["CIFAR10_ResNet20_GAP"]
    assert "91.73" not in rows["cifar_resnet20_gcp"]


def test_pairs_are_those_of_table_pairs(store, page):
    data = table_json(store)
    pair = next(p for p in data["pairs"] if p["kind"] == "corruption")
    clean = next(d for d in pair["differences"] if d["metric"] == "clean_error")
    assert clean["difference"] == round(clean["gcp"] - clean["gap"], 4) and clean["significant"] is True
    assert "★" in page and "GAP vs GCP" in page
    table = run_cli_in_process("table", "--db", str(store), "--pairs", "--run", "1", "--run", "3")
    assert f"{clean['difference']:+.2f}*" in table.stdout


def test_provenance_names_checkpoint_versions_and_device(store, page):
    data = table_json(store)
    for run in data["runs"]:
        (environment,) = run["environments"]
        assert environment["torch"] and environment["device"].startswith("cpu") and environment["package"]
    assert "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8" in page
    assert f"torch {data['runs'][0]['environments'][0]['torch']}" in page and "none (random weights)" in page


@pytest.mark.parametrize("case", ["empty", "unknown run", "directory", "suffix"])
def test_bad_report_input_gives_one_line_and_no_file(store, tmp_path, case):
    from robustbench_gcp.results import ResultStore

    db, out, extra = store, tmp_path / "r.html", []
    if case == "empty":
        db = tmp_path / "empty.sqlite"
        ResultStore(db)
    elif case == "unknown run":
        extra = ["--run", "99"]
    elif case == "directory":
        out = tmp_path
    else:
        out = tmp_path / "r.pdf"
    result = run_cli_in_process("report", "--db", str(db), "--out", str(out), *extra)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("gcp-robust report: error: ") and not (tmp_path / "r.html").exists()


def test_robustbench_export_validates_and_round_trips(store, tmp_path):
    data = table_json(store)
    result = run_cli_in_process("export", "--db", str(store), "--format", "robustbench", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.rglob("*.json"))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "cifar10/Linf/CIFAR10_ResNet20_GAP_eps_1_255.json", "cifar10/Linf/CIFAR10_ResNet20_GAP_eps_2_255.json",
        "cifar10/Linf/cifar_resnet20_gcp_eps_1_255.json", "cifar10/Linf/cifar_resnet20_gcp_eps_2_255.json"]
    assert "skipped run 1 (CIFAR10_ResNet20_GAP): not all 15 corruptions" in result.stdout
    runs = {(run["model"], run["kind"]): run["summary"] for run in data["runs"]}
    for path in files:
        entry = json.loads(path.read_text())
        check_model_info(entry, str(path))
        assert set(entry) == set(FIELDS) | {ATTACK_FIELD}
        summary = runs[entry["name"], "attack"]
        assert entry["clean_acc"] == f"{summary['clean_accuracy']:.2f}"
        assert float(entry[ATTACK_FIELD]) == round(summary["robust_accuracy"]["autoattack/square"][entry["eps"]], 2)
        assert "not standard" in entry["footnote"] and entry["architecture"].startswith("cifar_resnet20")


def test_robustbench_export_of_a_complete_corruption_run(tmp_path, resnet20_file, cifar_test_dir):
    db = tmp_path / "c.sqlite"
    result = run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint",
                                str(resnet20_file), "--data", str(cifar_test_dir), "--protocol", "cifar10-c",
                                "--limit", "10", "--db", str(db), "--quiet", "--workers", "0")
    assert result.returncode == 0, result.stderr
    result = run_cli_in_process("export", "--db", str(db), "--out", str(tmp_path / "mi"))
    entry = json.loads((tmp_path / "mi" / "cifar10" / "corruptions" / "CIFAR10_ResNet20_GAP.json").read_text())
    check_model_info(entry)
    summary = table_json(db)["runs"][0]["summary"]
    mean_error = sum(sum(errors) for errors in summary["errors"].values()) / 75
    assert entry[CORRUPTION_FIELD] == f"{100 - mean_error:.2f}" and entry["eps"] is None
    assert entry["clean_acc"] == f"{100 - summary['clean_error']:.2f}" and CORRUPTION_FIELD in entry
    broken = {**entry, "clean_acc": 76.5}
    with pytest.raises(ValueError, match="clean_acc"):
        check_model_info(broken)


def test_shift_runs_get_their_section_with_effective_robustness(tmp_path):
    from shift_trees import build_tree, build_val, photos_of

    tree = build_tree(tmp_path / "a", "imagenet-a", photos_of("imagenet-a", 8))
    val = build_val(tmp_path / "val", photos_of("imagenet-a", 8, skip=40))
    db, out = tmp_path / "s.sqlite", tmp_path / "s.html"
    for model in ("mobilenet_v2_gap", "mobilenet_v2_gcp"):
        result = run_cli_in_process("eval-shift", "--model", model, "--source", "imagenet-a", "--data", str(tree),
                                    "--clean-data", str(val), "--db", str(db), "--workers", "0", "--quiet")
        assert result.returncode == 0, result.stderr
    result = run_cli_in_process("report", "--db", str(db), "--out", str(out), "--trend", "imagenet-a=1,-1")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    data = table_json(db, "--trend", "imagenet-a=1,-1")
    assert [run["kind"] for run in data["runs"]] == ["shift", "shift"] and len(data["pairs"]) == 1
    assert all(run["summary"]["effective_robustness"] is not None for run in data["runs"])
    cells = _parsed(page).cells
    assert {c["src"][3] for c in cells if c["src"][0] == "runs"} >= {"top1_error", "effective_robustness"}
    for cell in cells:
        assert repr(resolve(data, cell["src"])) == cell["value"]
    assert "Natural distribution shifts" in page
