"""S5.ipynb executed headless, top to bottom, on tiny generated data with one short epoch."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
from conftest import ROOT, write_mnist
from nbclient import NotebookClient
from pytest import MonkeyPatch

from tools import report as report_tool

EXPECTED_IMAGES = ("samples", "augmentation", "metric_plot", "predictions", "misclassified",
                   "per_class", "confusion_matrix", "conv1_filters", "feature_maps", "saliency")


def colab_files() -> list[str]:
    """The files `make colab-zip` packs: the Makefile's COLAB_FILES, folders by their .py files."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines()
                if x.startswith("COLAB_FILES"))
    names = line.split(":=", 1)[1].split()
    return [str(p.relative_to(ROOT)) for name in names
            for p in ([ROOT / name] if (ROOT / name).is_file()
                      else sorted((ROOT / name).rglob("*.py")))]


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return params


def test_notebook_runs_every_cell_and_writes_the_images(tmp_path: Path) -> None:
    # the Colab path: only the notebook and the uploaded archive; the set-up cell unpacks it
    with zipfile.ZipFile(tmp_path / "s5-colab.zip", "w") as archive:
        for name in colab_files():
            archive.write(ROOT / name, name)
    write_mnist(tmp_path / "data", 512, 200)
    # a clone's committed README pictures: a user's run must leave them alone
    (tmp_path / "images").mkdir()
    for name in EXPECTED_IMAGES:
        (tmp_path / "images" / f"{name}.png").write_bytes(b"committed " + name.encode())
    nb = nbformat.read(ROOT / "S5.ipynb", as_version=4)
    params = parameters_cell(nb)
    assert "IMAGES_DIR = None " in params.source  # a user's run draws into images/runs/<run-id>/
    params.source += ('\nDATA_DIR = "data"\nVERIFY_MD5 = False\n'
                      'CHANGES = {"epochs": 1, "batch_size": 64, "test_batch_size": 100}\n')
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    (run_id,) = [p.stem for p in (tmp_path / "logs").glob("*.csv")]
    assert sorted(p.name for p in (tmp_path / "images" / "runs").iterdir()) == [run_id]
    for name in EXPECTED_IMAGES:
        png = tmp_path / "images" / "runs" / run_id / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
        assert (tmp_path / "images" / f"{name}.png").read_bytes() == b"committed " + name.encode()
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        [f"{name}.png" for name in EXPECTED_IMAGES] + ["runs"])
    shown = sum(1 for c in code_cells for o in c.outputs if "image/png" in o.get("data", {}))
    assert shown == len(EXPECTED_IMAGES)  # every plot is also shown inline
    text = "".join(o.get("text", "") for c in code_cells for o in c.outputs)
    assert "modules ready:" in text and str(tmp_path) not in text  # no absolute path in the outputs
    assert ("Total params: 593,200" in text
            and "maxpool | 14 | 8 | 2 | 2 | 0 | 2 | 16 | 4 | 4" in text)
    assert "Accuracy of 3 - three :" in text
    assert (len(list((tmp_path / "logs").glob("*.csv"))) == 1
            and len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1)


def test_make_notebook_draws_the_readme_pictures_into_images(tmp_path: Path,
                                                             monkeypatch: MonkeyPatch) -> None:
    # tools.report --notebook (`make notebook`) sets IMAGES_DIR to --images for its run only
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("IMAGES_DIR = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from pathlib import Path\n"
            "folder = Path(IMAGES_DIR or 'images/runs/x')\n"
            "folder.mkdir(parents=True, exist_ok=True)\n"
            "(folder / 'samples.png').write_bytes(b'drawn')\n"
            "print('drawn into', folder)"),
    ]
    nbformat.write(nb, tmp_path / "S5.ipynb")
    (tmp_path / "README.md").write_text("# no runs here\n")
    monkeypatch.chdir(tmp_path)
    # no run in logs/: the report itself fails, after the notebook has drawn
    assert report_tool.main(["--notebook", "S5.ipynb", "--log-dir", "logs"]) != 0
    assert (tmp_path / "images" / "samples.png").read_bytes() == b"drawn"
    assert not (tmp_path / "images" / "runs").exists()
    saved = nbformat.read(tmp_path / "S5.ipynb", as_version=4)
    assert saved.cells[0].source == "IMAGES_DIR = None"  # its own default, for a user's next run
    assert saved.cells[1].outputs[0].text == "drawn into images\n"

