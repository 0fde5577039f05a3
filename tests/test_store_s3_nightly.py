"""The nightly on object storage (a real S3-compatible server on 127.0.0.1): a catalogue whose
images are s3:// objects, embedded by the real Lite0 (its ONNX export, `lite0_onnx`), built in the
work folder's mirror of the store and published to the bucket; the second run gates against the
serving version it downloads."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd

from index.remote import RemoteStore
from jobs.cli import main
from tests.imagegen import write_images

pytest_plugins = ["tests.s3_support"]  # the S3 server (s3_server) and a bucket per test (s3_store)


def test_nightly_publishes_to_object_storage(s3_store: str, tmp_path: Path, capsys, lite0_onnx: Path) -> None:
    bucket = s3_store.split("/")[2]
    fs = fsspec.filesystem("s3")
    paths = write_images(tmp_path / "images", 12)
    for path in paths:
        fs.put_file(str(path), f"{bucket}/images/{path.name}")
    refs = [f"s3://{bucket}/images/{p.name}" for p in paths]
    pd.DataFrame({"item_id": [p.stem for p in paths], "image": refs,
                  "category": ["a", "b", "c"] * 4}).to_csv(tmp_path / "catalog.csv", index=False)
    config = tmp_path / "nightly.toml"
    config.write_text(f'work_dir = "work"\nstore = "{s3_store}"\n[catalog]\nfile = "catalog.csv"\n'
                      f'[embed]\nmodel = "{lite0_onnx}"\nbatch_size = 8\nworkers = 1\n')

    assert main(["nightly", "--config", str(config)]) == 0, capsys.readouterr().err
    remote = RemoteStore(s3_store)
    first = remote.current_version()
    assert remote.version_ids() == [first] and remote.read_meta(first)["count"] == 12
    assert not (tmp_path / "s3:").exists()
    mirror = tmp_path / "work" / "store-cache"
    assert (mirror / "versions" / first / "meta.json").is_file()  # built there, then uploaded

    assert main(["nightly", "--config", str(config)]) == 0, capsys.readouterr().err
    second = remote.current_version()
    assert second != first and remote.history() == [first, second]
    report = capsys.readouterr().out
    assert f"published {second} (was {first})" in report
