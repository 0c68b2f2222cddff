"""S5.ipynb executed headless, top to bottom, on tiny generated data with one short epoch."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
from conftest import ROOT, write_mnist
from nbclient import NotebookClient

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


def test_notebook_runs_every_cell_and_writes_the_images(tmp_path: Path) -> None:
    # the Colab path: only the notebook and the uploaded archive; the set-up cell unpacks it
    with zipfile.ZipFile(tmp_path / "s5-colab.zip", "w") as archive:
        for name in colab_files():
            archive.write(ROOT / name, name)
    write_mnist(tmp_path / "data", 512, 200)
    nb = nbformat.read(ROOT / "S5.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = (
        'DATA_DIR = "data"\nIMAGES_DIR = "images"\nVERIFY_MD5 = False\nRECIPE = None\n'
        'CHANGES = {"epochs": 1, "batch_size": 64, "test_batch_size": 100}\n'
    )
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    for name in EXPECTED_IMAGES:
        png = tmp_path / "images" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name
    shown = sum(1 for c in code_cells for o in c.outputs if "image/png" in o.get("data", {}))
    assert shown == len(EXPECTED_IMAGES)  # every plot is also shown inline
    text = "".join(o.get("text", "") for c in code_cells for o in c.outputs)
    assert "modules ready:" in text and str(tmp_path) not in text  # no absolute path in the outputs
    assert ("Total params: 593,200" in text
            and "maxpool | 14 | 8 | 2 | 2 | 0 | 2 | 16 | 4 | 4" in text)
    assert "Accuracy of 3 - three :" in text
    assert (len(list((tmp_path / "logs").glob("*.csv"))) == 1
            and len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1)
