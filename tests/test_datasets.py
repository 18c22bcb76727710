"""Annotation readers on small hand-written files."""
import os

import pytest

from d3d_tf.data import datasets
from d3d_tf.data.datasets import AnnotationError


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_kinetics_csv_flat_and_label_folders(tmp_path):
    csv_path = _write(tmp_path / "k.csv", "label,youtube_id,time_start,time_end,split\n"
                      "air drumming,abc,5,15,train\n"
                      "abseiling,xyz,0,10,train\n"
                      "abseiling,missing,20,30,val\n")
    vids = tmp_path / "videos"
    _write(vids / "air_drumming" / "abc_000005_000015.mp4", "")   # underscores folder
    _write(vids / "xyz_000000_000010.mp4", "")                       # flat
    entries, labels = datasets.read_kinetics_csv(csv_path, str(vids))
    assert labels == ["abseiling", "air drumming"]
    by_id = {e.video_id: e for e in entries}
    assert by_id["abc_000005_000015"].path == str(vids / "air_drumming" / "abc_000005_000015.mp4")
    assert by_id["xyz_000000_000010"].path == str(vids / "xyz_000000_000010.mp4")
    assert by_id["xyz_000000_000010"].label_name == "abseiling"
    # Missing files are still listed (prepare reports them) at the label-folder location.
    assert by_id["missing_000020_000030"].split == "val"
    assert by_id["missing_000020_000030"].path.endswith(
        os.path.join("abseiling", "missing_000020_000030.mp4"))


def test_kinetics_csv_errors(tmp_path):
    bad = _write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\n"
                 "a,abc,0,10,train\na,def,zero,10,train\n")
    with pytest.raises(AnnotationError, match=r"bad\.csv:3: time_start"):
        datasets.read_kinetics_csv(bad, str(tmp_path))
    hdr = _write(tmp_path / "hdr.csv", "name,id\n")
    with pytest.raises(AnnotationError, match=r"hdr\.csv:1: header"):
        datasets.read_kinetics_csv(hdr, str(tmp_path))
    dup = _write(tmp_path / "dup.csv", "label,youtube_id,time_start,time_end,split\n"
                 "a,abc,0,10,train\nb,abc,0,10,train\n")
    with pytest.raises(AnnotationError, match="abc_000000_000010.*twice"):
        datasets.read_kinetics_csv(dup, str(tmp_path))


def test_kinetics_csv_without_label_column(tmp_path):
    csv_path = _write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\n"
                      "q,1,11,test\n")
    entries, labels = datasets.read_kinetics_csv(csv_path, str(tmp_path))
    assert labels == [] and entries[0].label_name is None and entries[0].split == "test"


def _ucf_splits(root, train_line="ApplyLipstick/v_ApplyLipstick_g01_c01.avi 2"):
    _write(root / "classInd.txt", "1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n")
    _write(root / "trainlist01.txt",
           f"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n{train_line}\n")
    _write(root / "testlist01.txt", "Archery/v_Archery_g01_c02.avi\n\n")
    return str(root)


def test_ucf101(tmp_path):
    split_dir = _ucf_splits(tmp_path / "splits")
    entries, labels = datasets.read_ucf101(split_dir, "/data/UCF-101", fold=1)
    assert labels == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert [(e.video_id, e.label_name, e.split) for e in entries] == [
        ("v_ApplyEyeMakeup_g08_c01", "ApplyEyeMakeup", "train"),
        ("v_ApplyLipstick_g01_c01", "ApplyLipstick", "train"),
        ("v_Archery_g01_c02", "Archery", "test")]
    assert entries[0].path == "/data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"


@pytest.mark.parametrize("line, message", [
    ("ApplyLipstick/v_ApplyLipstick_g01_c01.avi 3", "class index 3 is 'Archery'"),
    ("ApplyLipstick/v_ApplyLipstick_g01_c01.avi 9", "not in 1..3"),
    ("Nope/v_Nope_g01_c01.avi 1", "expected"),
])
def test_ucf101_errors_name_file_and_line(tmp_path, line, message):
    split_dir = _ucf_splits(tmp_path / "splits", train_line=line)
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:2: .*" + message):
        datasets.read_ucf101(split_dir, "/v")


def test_hmdb51(tmp_path):
    split_dir = tmp_path / "splits"
    _write(split_dir / "brush_hair_test_split1.txt", "a.avi 1\nb.avi 2\nc.avi 0\n")
    _write(split_dir / "cartwheel_test_split1.txt", "d.avi 2 \n")
    _write(split_dir / "cartwheel_test_split2.txt", "d.avi 1\n")
    entries, labels = datasets.read_hmdb51(str(split_dir), "/hmdb", fold=1)
    assert labels == ["brush_hair", "cartwheel"]
    assert [(e.video_id, e.label_name, e.split) for e in entries] == [
        ("a", "brush_hair", "train"), ("b", "brush_hair", "test"), ("d", "cartwheel", "test")]
    assert entries[0].path == "/hmdb/brush_hair/a.avi"
    _write(split_dir / "cartwheel_test_split1.txt", "d.avi 2\ne.avi 7\n")
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split1\.txt:2: expected"):
        datasets.read_hmdb51(str(split_dir), "/hmdb")
    with pytest.raises(AnnotationError, match="no '\\*_test_split3.txt'"):
        datasets.read_hmdb51(str(split_dir), "/hmdb", fold=3)


def test_folder_tree_and_file_list(tmp_path):
    root = tmp_path / "videos"
    for rel in ("run/a.mp4", "run/b.avi", "walk/c.webm", "walk/notes.txt"):
        _write(root / rel, "")
    entries, labels = datasets.read_folder_tree(str(root), split="val")
    assert labels == ["run", "walk"]
    assert [(e.video_id, e.label_name, e.split) for e in entries] == [
        ("run/a", "run", "val"), ("run/b", "run", "val"), ("walk/c", "walk", "val")]

    list_path = _write(tmp_path / "list.txt", "# unlabeled\nvideos/run/a.mp4\n/abs/x.mp4\n")
    entries, labels = datasets.read_file_list(list_path)
    assert labels == []
    assert [(e.path, e.label_name, e.video_id) for e in entries] == [
        (str(root / "run" / "a.mp4"), None, "videos/run/a"), ("/abs/x.mp4", None, "x")]
    with pytest.raises(AnnotationError, match="not found"):
        datasets.read_folder_tree(str(tmp_path / "nothing"))


def test_manifest(tmp_path):
    _write(tmp_path / "ds" / "labels.txt", "left\nright\n")
    manifest = _write(tmp_path / "ds" / "manifest.csv",
                      "path,label_name,split\ntrain/left/0.mp4,left,train\n"
                      "test/right/1.mp4,right,test\n")
    entries, labels = datasets.read_dataset("manifest", annotations=manifest)
    assert labels == ["left", "right"]
    assert entries[1] == datasets.VideoEntry(str(tmp_path / "ds" / "test/right/1.mp4"), "right",
                                             "test", "test/right/1")
    _write(tmp_path / "ds" / "manifest.csv", "path,label_name,split\na.mp4,up,train\n")
    with pytest.raises(AnnotationError, match="'up'.*labels.txt"):
        datasets.read_manifest(manifest)
    with pytest.raises(ValueError, match="unknown dataset format"):
        datasets.read_dataset("imagenet")
