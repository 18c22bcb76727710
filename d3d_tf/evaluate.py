r"""Evaluate model directories on a TFRecord set: `python -m d3d_tf.evaluate --flagfile=...`.

    python -m d3d_tf.evaluate --model_dir=runs/d3d/model --model_dir=runs/baseline/model \
        --data='records/val-*.tfrecord' --ensemble --out_dir=runs/eval

Writes results.json, report.md, per_class.csv, per_video.csv (each model's predicted class
per video, for paired comparisons), per-class plots (best/worst classes, and the
per-class difference between the first two models), and a confusion matrix per model.
With --ensemble, the softmax scores of all models are averaged (D3D + S3D-G, paper Table 2).
--eval_clips=K --eval_crops=3 is the K clips x 3 crops protocol (video score = mean of the K*3
softmaxes). The mean over the three splits of UCF-101 / HMDB-51:

    python -m d3d_tf.evaluate --average=eval/s1/results.json,eval/s2/results.json,\
        eval/s3/results.json --out_dir=eval/ucf101

--table=d3d_table2 (and the other tables of `d3d_tf.metrics.paper_tables`) also writes
OUT/d3d_table2.md, the results in the paper's layout (columns, rows, caption); with
--results=eval/results.json it lays out earlier evaluations instead of evaluating
(docs/papers.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING

from absl import app, flags, logging

from d3d_tf.ava.ava import AvaEvalConfig
from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field, section
from d3d_tf.data.clip import ClipConfig
from d3d_tf.data.read_options import ReadConfig
from d3d_tf.metrics import paper_tables

if TYPE_CHECKING:
    from d3d_tf.data import damaged_shards
    from d3d_tf.models import saving
    from d3d_tf.training import evaluation

FLAGS = flags.FLAGS


@dataclasses.dataclass
class EvaluateConfig:
    """The flags of `python -m d3d_tf.evaluate` (`d3d_tf.core.config_flags`); --model_dir,
    --name and --ensemble_of are repeatable flags beside it."""
    task: str = field("classify", "classify: clip/video accuracy of classifiers; ava: frame-mAP "
                      "of an AVA detector (one --model_dir) on keyframe records (docs/ava.md).",
                      choices=("classify", "ava"))
    data: str | None = field(None, "Glob of evaluation TFRecord shards.")
    labels: str | None = field(None, "labels.txt (default: the first model's labels, else "
                               "labels.txt next to the shards).")
    out_dir: str | None = field(None, "Where to write the report (created).")
    batch_size: int = field(8, "Evaluation batch size.", min=1)
    clip: ClipConfig = section(ClipConfig, "Clip (default: the model's input T and H)")
    eval_clips: int = field(1, "Evenly spaced clips per video (video score = mean of clip "
                            "softmaxes).", min=1, aliases=("num_clips",))
    eval_crops: int = field(1, "Spatial crops per clip: 1 (centre) or 3 (first, centre, last "
                            "position along the long side).", min=1, aliases=("num_crops",))
    reading: ReadConfig = section(ReadConfig, "Reading")
    ensemble: bool = field(False, "Also evaluate the average of all models' softmaxes.")
    compare: tuple | None = field(None, "Two --name values A,B: plot the per-class accuracy of "
                                  "B minus A (default: the first two models).")
    plot_top: int = field(10, "Best/worst classes shown in the per-class plots.", min=1)
    average: tuple | None = field(None, "results.json files of earlier runs (e.g. one per "
                                  "dataset split): write their mean per model to "
                                  "--out_dir/average.json and average.md instead of "
                                  "evaluating.")
    table: tuple | None = field(None, "Also write these papers' tables of the results in the "
                                "paper's layout, as OUT/<table>.md: "
                                + ", ".join(paper_tables.TABLES) + " (the rows are the --name "
                                "values; docs/papers.md).")
    results: tuple | None = field(None, "results.json files of earlier evaluations: write the "
                                  "--table(s) of them to --out_dir instead of evaluating "
                                  "(LABEL=path names the file's column of d3d_table4, e.g. "
                                  "UCF-101=eval/ucf/results.json, or its row of d3d_table5, "
                                  "an --task=ava evaluation).")
    teacher_targets: str | None = field(None, "With --table=distinit_fig6: glob of DistInit "
                                        "target records (python -m d3d_tf.distinit_targets) "
                                        "whose stored teacher logits give distinit_fig6.png "
                                        "its density of the teacher's entropy per frame (the "
                                        "first teacher's, when several).")
    ava: AvaEvalConfig = section(AvaEvalConfig, "AVA (--task=ava)")


config_flags.define_flags(EvaluateConfig, defaults={"num_frames": None, "crop_size": None})
flags.register_validator("eval_crops", lambda v: v in (1, 3), "--eval_crops must be 1 or 3")
flags.register_validator("table", lambda v: not v or all(t in paper_tables.TABLES for t in v),
                         "--table takes " + ", ".join(paper_tables.TABLES))
flags.DEFINE_multi_string("model_dir", None, "Model directory or training run directory "
                          "(repeatable).")
flags.DEFINE_multi_string("name", None, "Display name per --model_dir (default: directory name).")
flags.DEFINE_multi_string("ensemble_of", None, "An ensemble to evaluate, as --name values "
                          "joined by '+', e.g. d3d+baseline (repeatable).")
HELP_GROUPS = [("Models", ["model_dir", "name", "ensemble_of"]),
               *cli.help_groups(EvaluateConfig)]


def evaluate_model(directory: str, *, data: str, num_frames=None, crop_size=None,
                   frame_stride=1, resize_short_side=None, num_clips=1, num_crops=1,
                   batch_size=8, skip_damaged: damaged_shards.DamageLog | None = None,
                   ) -> tuple[evaluation.Predictions, saving.ModelSpec]:
    """Predictions of the model directory on `data` (deterministic order); with
    `skip_damaged`, damaged shards are read up to the damage and entered in that log."""
    from d3d_tf.data import pipeline, read_errors
    from d3d_tf.models import saving
    from d3d_tf.training import evaluation

    spec = saving.load_spec(directory)
    t = num_frames or spec.input_shape[0]
    size = crop_size or spec.input_shape[1]
    model, spec = saving.load_model_dir(directory, input_shape=(t, size, size),
                                        dropout_keep_prob=1.0)
    cfg = pipeline.PipelineConfig(file_pattern=data, num_frames=t, frame_stride=frame_stride,
                                  crop_size=size, training=False, modalities=(spec.modality,),
                                  batch_size=batch_size, num_clips=num_clips,
                                  num_crops=num_crops, resize_short_side=resize_short_side,
                                  rgb_range=spec.rgb_range if spec.modality == "rgb"
                                  else "[-1,1]", num_classes=spec.num_classes)
    with read_errors.explained(data):
        try:
            preds = evaluation.predict(model, pipeline.make_dataset(
                cfg, skip_damaged=skip_damaged), modality=spec.modality, progress_every_s=30,
                total_clips=pipeline.num_eval_clips(cfg))
        except evaluation.EmptyDataError:
            raise read_errors.nothing_read("--data", data, skip_damaged) from None
    return preds, spec


def main(argv):
    del argv
    c = config_flags.from_flags(EvaluateConfig)
    from d3d_tf.core import atomic
    from d3d_tf.data import damaged_shards, pipeline, preprocessing
    from d3d_tf.models import saving
    from d3d_tf.training import evaluation

    logging.set_verbosity(logging.INFO)
    if c.average:
        if not c.out_dir:
            raise app.UsageError("--average needs --out_dir")
        try:
            evaluation.write_average(c.average, c.out_dir)
        except (ValueError, FileNotFoundError) as e:
            raise app.UsageError(str(e))
        logging.info("wrote %s", os.path.join(c.out_dir, "average.md"))
        return
    if c.teacher_targets:  # checked before evaluating: the figure is drawn at the end
        if "distinit_fig6" not in (c.table or []):
            raise app.UsageError("--teacher_targets draws distinit_fig6.png: it needs "
                                 "--table=distinit_fig6")
        try:
            pipeline.list_files(c.teacher_targets)
        except FileNotFoundError as e:
            raise app.UsageError(f"--teacher_targets: {e}") from None
    if c.results:
        _tables_from_results(c)
        return
    if not FLAGS.model_dir or not c.data or not c.out_dir:
        raise app.UsageError("--model_dir, --data and --out_dir are required")
    if c.task == "ava":
        _evaluate_ava(c)
        return
    for d in FLAGS.model_dir:
        try:
            saving.resolve_model_dir(d)
        except FileNotFoundError as e:
            raise app.UsageError(f"--model_dir={d}: {e}") from None
    try:
        pipeline.list_files(c.data)  # before any model loads
    except FileNotFoundError as e:
        raise app.UsageError(f"--data: {e}") from None
    skip = c.reading.skip_corrupt_records
    names = FLAGS.name or [saving.run_name(d) for d in FLAGS.model_dir]
    if len(names) != len(FLAGS.model_dir):
        raise app.UsageError("give one --name per --model_dir")
    os.makedirs(c.out_dir, exist_ok=True)
    preds, results = {}, {}
    class_names = None
    for name, d in zip(names, FLAGS.model_dir):
        logging.info("evaluating %s (%s)", name, d)
        damage = damaged_shards.DamageLog() if skip else None
        p, spec = evaluate_model(d, data=c.data, num_frames=c.clip.num_frames,
                                 crop_size=c.clip.crop_size, frame_stride=c.clip.frame_stride,
                                 resize_short_side=c.clip.resize_short_side,
                                 num_clips=c.eval_clips, num_crops=c.eval_crops,
                                 batch_size=c.batch_size, skip_damaged=damage)
        preds[name], results[name] = p, evaluation.metrics(p)
        results[name]["protocol"] = evaluation.protocol(
            num_clips=c.eval_clips, num_crops=c.eval_crops,
            num_frames=c.clip.num_frames or spec.input_shape[0],
            crop_size=c.clip.crop_size or spec.input_shape[1], frame_stride=c.clip.frame_stride,
            resize_short_side=c.clip.resize_short_side)
        results[name]["model"] = paper_tables.model_info(dataclasses.asdict(spec), d)
        if damage is not None:  # what could be read, in results.json and on stdout
            videos = len(set(p.video_ids))
            results[name]["data"] = {"videos_read": videos, **damage.to_json()}
            print(f"{name}: {videos} video(s) read; {damage.summary() or 'no damaged shard'}",
                  flush=True)
        class_names = class_names or spec.labels
        s = evaluation.summary(results[name])
        logging.info("%s: clip top1 %.4f, video top1 %.4f top5 %.4f mca %.4f", name,
                     s["clip_top1"], s["video_top1"], s["video_top5"],
                     s["video_mean_class_accuracy"])
    if c.ensemble and len(preds) > 1:
        name = "+".join(names)
        preds[name] = evaluation.ensemble([preds[n] for n in names])
        results[name] = evaluation.metrics(preds[name])
        _same_protocol(results, name, names)
        logging.info("ensemble %s: video top1 %.4f", name, results[name]["video"]["top1"])
    for spec_str in FLAGS.ensemble_of or []:
        members = spec_str.split("+")
        unknown = [m for m in members if m not in names]
        if unknown or len(members) < 2:
            raise app.UsageError(f"--ensemble_of={spec_str}: needs 2+ of the --name values "
                                 f"{names}, unknown {unknown}")
        preds[spec_str] = evaluation.ensemble([preds[m] for m in members])
        results[spec_str] = evaluation.metrics(preds[spec_str])
        _same_protocol(results, spec_str, members)
        logging.info("ensemble %s: video top1 %.4f", spec_str,
                     results[spec_str]["video"]["top1"])
    if c.labels:
        class_names = preprocessing.read_labels(c.labels)
    if not class_names:
        k = next(iter(preds.values())).probs.shape[1]
        class_names = [str(i) for i in range(k)]
    pair = None
    if c.compare:
        if len(c.compare) != 2 or any(n not in results for n in c.compare):
            raise app.UsageError(f"--compare needs two of {list(results)}")
        pair = tuple(c.compare)
    elif len(names) >= 2:
        pair = names[1], names[0]
    # One set: a failed run leaves the previous run's files whole (docs/failures.md).
    with atomic.publish_files(c.out_dir, last="results.json", stale=STALE_OUTPUTS) as out:
        _write_outputs(c, out, results, preds, class_names, pair)
        _write_tables(c, out, [results])
    logging.info("wrote %s", c.out_dir)


def _same_protocol(results, ensemble, members):
    """An ensemble's results get its members' protocol when they share one."""
    kinds = {json.dumps(results[m]["protocol"], sort_keys=True) for m in members}
    if len(kinds) == 1:
        results[ensemble]["protocol"] = results[members[0]]["protocol"]


FIG6_PNG = "distinit_fig6.png"  # written with distinit_fig6.md

# What a classifier evaluation writes beside results.json and report.md, per model or pair.
STALE_OUTPUTS = ("per_class.csv", "per_video.csv", "per_class_*.png", "confusion_*.png",
                 "per_class_difference.png", "report.md",
                 *(f"{table}.md" for table in paper_tables.TABLES), FIG6_PNG)


def _write_outputs(c: EvaluateConfig, out_dir, results, preds, class_names, pair):
    from d3d_tf.training import evaluation

    evaluation.write_report(out_dir, results, class_names)
    evaluation.write_per_video_csv(os.path.join(out_dir, evaluation.PER_VIDEO_CSV), preds)
    per_class = {n: r["video"]["per_class"] for n, r in results.items()}
    evaluation.write_per_class_csv(os.path.join(out_dir, "per_class.csv"), class_names,
                                   per_class)
    for n, p in preds.items():
        safe = n.replace("/", "_").replace("+", "_plus_")
        evaluation.plot_per_class(os.path.join(out_dir, f"per_class_{safe}.png"),
                                  class_names, per_class[n], top=c.plot_top, title=n)
        cm = evaluation.confusion_matrix(evaluation.video_level(p), len(class_names))
        evaluation.plot_confusion(os.path.join(out_dir, f"confusion_{safe}.png"), cm,
                                  class_names, title=n)
    if pair:
        a, b = pair
        evaluation.plot_per_class_difference(
            os.path.join(out_dir, "per_class_difference.png"), class_names,
            per_class[a], per_class[b], label_a=a, label_b=b, top=c.plot_top)


def _write_tables(c: EvaluateConfig, out_dir: str, runs: list[dict], labels=None) -> None:
    """OUT/<table>.md for every --table, from `runs` (results.json dicts)."""
    from d3d_tf.core import atomic

    for name in c.table or []:
        lines = paper_tables.table(name, runs, labels)
        atomic.write_text(os.path.join(out_dir, f"{name}.md"), "\n".join(lines) + "\n")
        if name == "distinit_fig6":
            _write_fig6(c, out_dir, runs)


def _write_fig6(c: EvaluateConfig, out_dir: str, runs: list[dict]) -> None:
    """OUT/distinit_fig6.png: the accuracy line and, with --teacher_targets, the density of the
    teacher's entropy per stored frame."""
    from d3d_tf.data import pipeline
    from d3d_tf.distinit import entropy_figure, teacher_logits

    entropies, teacher = None, ""
    try:
        if c.teacher_targets:
            entropies, name, count = teacher_logits.first_teacher_entropies(
                pipeline.list_files(c.teacher_targets))
            teacher = name if count == 1 else f"{name}, the first of {count} teachers"
        merged = {n: m for r in runs for n, m in r.items()}
        entropy_figure.write_png(merged, os.path.join(out_dir, FIG6_PNG),
                                 entropies=entropies, teacher=teacher)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(f"--teacher_targets={c.teacher_targets}: {e}"
                             if c.teacher_targets else str(e)) from None


def _tables_from_results(c: EvaluateConfig):
    """--results: the --table(s) of earlier results.json files, nothing evaluated."""
    if not c.table or not c.out_dir:
        raise app.UsageError("--results needs --table and --out_dir")
    runs, labels = [], []
    for item in c.results:
        label, _, path = item.rpartition("=")
        try:
            runs.append(paper_tables.read_results(path))
        except (ValueError, FileNotFoundError) as e:
            raise app.UsageError(f"--results: {e}") from None
        labels.append(label or os.path.basename(os.path.dirname(os.path.abspath(path))))
    os.makedirs(c.out_dir, exist_ok=True)
    _write_tables(c, c.out_dir, runs, labels)
    for name in c.table:
        print(f"wrote {os.path.join(c.out_dir, name + '.md')}", flush=True)
        if name == "distinit_fig6":
            print(f"wrote {os.path.join(c.out_dir, FIG6_PNG)}", flush=True)


def _evaluate_ava(c: EvaluateConfig):
    from d3d_tf.ava import task as ava_task

    if len(FLAGS.model_dir) != 1:
        raise app.UsageError("--task=ava evaluates one --model_dir (a detector directory)")
    if c.reading.skip_corrupt_records:
        raise app.UsageError("--skip_corrupt_records is not available with --task=ava")
    try:
        out = ava_task.evaluate_detector(
            FLAGS.model_dir[0], c.data, c.ava,
            c.out_dir, batch_size=c.batch_size)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    print(out["groundtruth_match"]["line"])
    print(f"frame-mAP {out['frame_mAP']:.4f} (random scores on the same boxes: "
          f"{out['random_scores_frame_mAP']:.4f}) over {out['keyframes']} keyframes; "
          f"wrote {c.out_dir}")


if __name__ == "__main__":
    cli.run(main, groups=HELP_GROUPS)
