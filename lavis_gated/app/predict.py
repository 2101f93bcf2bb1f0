"""lavis-gated-predict: a checkpoint's answers, for scripts, one input or a whole file of them.

    lavis-gated-predict --checkpoint CKPT --image PATH --question "What style is this painting?"
    answer: pop art
    styles: pop art 0.930 | cubism 0.031 | minimalism 0.012

    lavis-gated-predict --checkpoint CKPT --input questions.csv --output predictions.csv
    lavis-gated-predict --checkpoint CKPT --input paintings/ --question "Who painted this?" --output p.jsonl

One input: --json prints {"answer", "answer_unmodulated", "styles": [{"style", "probability"}]} instead of
two lines. Without --question (or with a blank one) the image is captioned: the first line reads
"caption: ..." and "answer" holds the caption. Many: --input is a CSV/TSV/JSON table with the columns
image and question (and optionally id; image names relative to --images, default the table's folder), or a
folder of images asked one --question.
Its rows go through the model --batch-size at a time (one generation per batch; two with --unmodulated)
under a progress bar, and each batch's predictions are appended to --output (.csv, .jsonl, or .json
rewritten whole after each batch) as soon as they exist. Running the same command again skips the ids
already in --output: an interrupted run resumes where it stopped. Columns: id, image, question, answer,
answer_unmodulated (with --unmodulated), style_1, style_1_probability, ... style_K, style_K_probability.

The model is loaded once, on --device (default cuda when a GPU is visible: the frozen ViT and OPT in fp16,
as LAVIS; else cpu in fp32): app/inference.load_model. Bad input (no such image, not an image, a row
without an image, no or an unsafe checkpoint) is a one-line message on stderr naming the
file and row, and exit status 2.
"""

import json
import os
import sys

from lavis_gated.app import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS, checkpoint_files
from lavis_gated.common.command_line import add_flags, command_parser

TOP_K = 3
DEFAULT_BATCH_SIZE = 8
OUTPUT_FORMATS = (".csv", ".jsonl", ".json")


def parse_args(argv=None):
    parser = command_parser(
        "lavis-gated-predict",
        "Answer questions about images with a lavis-gated checkpoint: one image and question, or a table "
        "(or folder) of them into a predictions CSV/JSON, batched and resumable.",
        "lavis-gated-predict --input data/artquest/artquest_test.csv --output predictions.csv --device cuda",
        "app.md",
    )
    add_flags(
        parser,
        "checkpoint",
        "device",
        "num-threads",
        "max-len",
        "num-beams",
        "batch-size",
        checkpoint={
            "help": "a checkpoint written by lavis-gated's runner (default: the newest "
            f"{checkpoint_files.DEFAULT_PATTERN})"
        },
        max_len={
            "default": DEFAULT_MAX_LENGTH,
            "help": "most new tokens of the answer (default %(default)s)",
        },
        num_beams={"default": DEFAULT_NUM_BEAMS, "help": "beam search width (default %(default)s)"},
        batch_size={
            "default": DEFAULT_BATCH_SIZE,
            "help": f"inputs per batch with --input (default {DEFAULT_BATCH_SIZE})",
        },
    )
    one = parser.add_argument_group("one input")
    one.add_argument("--image", metavar="PATH", help="an image file (PNG, JPEG, ...)")
    one.add_argument("--json", action="store_true", help="print one JSON object instead of two lines")
    many = parser.add_argument_group("many inputs")
    many.add_argument(
        "--input",
        metavar="TABLE_OR_DIR",
        help="a CSV/TSV/JSON table with columns image, question (and id), or a folder of images",
    )
    many.add_argument("--images", metavar="DIR", help="folder the table's image names are relative to")
    many.add_argument(
        "--output", metavar="FILE", help=f"predictions file to write or resume ({', '.join(OUTPUT_FORMATS)})"
    )
    parser.add_argument(
        "--question",
        help="the question about the image (with a folder --input: asked of every image); with --image, "
        "omitted or blank: caption the image",
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help=f"style head's top styles (default {TOP_K})")
    parser.add_argument(
        "--unmodulated",
        action="store_true",
        help="also answer with the K/V modulation switched off (same weights): a second generation",
    )
    args = parser.parse_args(argv)
    if bool(args.image) == bool(args.input):
        parser.error("give either --image (one input) or --input (a table or folder of them)")
    if args.input and not args.output:
        parser.error("--input needs --output FILE (.csv, .jsonl or .json)")
    if args.output and os.path.splitext(args.output)[1].lower() not in OUTPUT_FORMATS:
        parser.error(f"--output {args.output}: the file name must end in one of {', '.join(OUTPUT_FORMATS)}")
    for name in ("num_beams", "max_len", "batch_size", "top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def format_lines(prediction, asked=True):
    """Two lines (three with the unmodulated answer); `asked` False: the answer is the image's caption."""
    styles = " | ".join(f"{name} {probability:.3f}" for name, probability in prediction.styles)
    kind = "answer" if asked else "caption"
    lines = f"{kind}: {prediction.answer}\nstyles: {styles}"
    if prediction.answer_unmodulated is not None:
        lines += f"\n{kind} without the modulation: {prediction.answer_unmodulated}"
    return lines


def format_json(prediction):
    return json.dumps(
        {
            "answer": prediction.answer,
            "answer_unmodulated": prediction.answer_unmodulated,
            "styles": [{"style": name, "probability": p} for name, p in prediction.styles],
        }
    )


# ---- many inputs ----------------------------------------------------------------------------------------


def read_inputs(path, question=None, images=None):
    """[{"id", "image" (path), "question"}] of a table or a folder; InputError naming the file and row for a
    missing column, a row without an image or question, or ids given twice."""
    from lavis_gated.app.inputs import InputError

    if os.path.isdir(path):
        from lavis_gated.wikiart.style_folders import list_images

        if not question:
            raise InputError(f"--input {path} is a folder: give the --question to ask of its images")
        found, _ = list_images(path, recursive=True)
        if not found:
            raise InputError(f"--input {path}: the folder holds no image files")
        return [
            {"id": os.path.relpath(p, path).replace(os.sep, "/"), "image": p, "question": question}
            for p in found
        ]
    from lavis_gated.datasets.annotation_files import read_table

    try:
        frame = read_table(path)
    except (OSError, ValueError) as err:
        raise InputError(f"--input {path}: {err}") from None
    needed = ["image"] + ([] if question else ["question"])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no column(s) {missing}; a predictions input has columns image, question and "
            f"optionally id (found {list(frame.columns)})"
        )
    root = images or os.path.dirname(os.path.abspath(path))
    rows, seen = [], {}
    for line, row in zip(frame.index, frame.to_dict("records")):
        image, asked = str(row.get("image") or "").strip(), str(row.get("question") or question or "").strip()
        if not image or not asked:
            raise InputError(f"{path} line {line}: the row has no {'image' if not image else 'question'}")
        row_id = str(row.get("id") or "").strip() or str(line)
        if row_id in seen:
            raise InputError(f"{path} line {line}: id {row_id!r} was already given on line {seen[row_id]}")
        seen[row_id] = line
        rows.append({"id": row_id, "image": os.path.join(root, image), "question": asked, "line": line})
    missing_images = [r for r in rows if not os.path.isfile(r["image"])]
    if missing_images:
        first = missing_images[0]
        raise InputError(
            f"{path} line {first['line']}: no image file at {first['image']} ({len(missing_images)} rows "
            "name a missing image; --images sets the folder image names are relative to)"
        )
    return rows


def output_columns(top_k, unmodulated):
    columns = ["id", "image", "question", "answer"] + (["answer_unmodulated"] if unmodulated else [])
    for rank in range(1, top_k + 1):
        columns += [f"style_{rank}", f"style_{rank}_probability"]
    return columns


def output_record(row, prediction, top_k, unmodulated):
    """The flat record of one prediction, in output_columns' order."""
    record = {
        "id": row["id"],
        "image": row["image"],
        "question": row["question"],
        "answer": prediction.answer,
    }
    if unmodulated:
        record["answer_unmodulated"] = prediction.answer_unmodulated or ""
    styles = list(prediction.styles) + [("", None)] * (top_k - len(prediction.styles))
    for rank, (name, probability) in enumerate(styles[:top_k], 1):
        record[f"style_{rank}"] = name
        record[f"style_{rank}_probability"] = "" if probability is None else round(float(probability), 6)
    return record


def read_done(path):
    """The records already in a predictions file (to resume after them), [] when it does not exist. The
    last CSV/JSONL line of an interrupted write is dropped when it is cut short."""
    if not os.path.isfile(path):
        return []
    extension = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8", newline="") as f:
        if extension == ".json":
            text = f.read()
            return json.loads(text) if text.strip() else []
        if extension == ".jsonl":
            records = []
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut short by an interruption: predicted again
            return records
        import csv

        return [r for r in csv.DictReader(f) if r.get("answer") is not None]


class PredictionWriter:
    """Appends each batch's records to the output file as soon as they exist (.json: rewritten whole,
    atomically), so an interrupted run keeps every finished batch."""

    def __init__(self, path, columns, done):
        self.path, self.columns = path, columns
        self.extension = os.path.splitext(path)[1].lower()
        self.records = list(done) if self.extension == ".json" else None
        if self.extension == ".csv":
            import csv

            if done and list(done[0].keys()) != columns:
                raise ValueError(
                    f"{path} has the columns {list(done[0].keys())}, this run writes {columns}: resume with "
                    "the same --top-k and --unmodulated, or write to another --output"
                )
            fresh = not os.path.isfile(path) or not done
            self._rewrite_csv(done) if done else None
            self.handle = open(path, "a" if done else "w", encoding="utf-8", newline="")
            self.csv = csv.DictWriter(self.handle, fieldnames=columns)
            if fresh:
                self.csv.writeheader()
        elif self.extension == ".jsonl":
            self._rewrite_jsonl(done)
            self.handle = open(path, "a", encoding="utf-8")

    def _rewrite_csv(self, done):
        # drops a last row cut short by an interruption before appending after it
        import csv

        from lavis_gated.common.atomic_files import atomic_file

        with atomic_file(self.path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(done)

    def _rewrite_jsonl(self, done):
        from lavis_gated.common.atomic_files import atomic_file

        with atomic_file(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in done)

    def write(self, records):
        if self.extension == ".csv":
            self.csv.writerows(records)
            self.handle.flush()
        elif self.extension == ".jsonl":
            self.handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            self.handle.flush()
        else:
            from lavis_gated.common.atomic_files import atomic_file

            self.records += records
            with atomic_file(self.path, "w", encoding="utf-8") as f:
                json.dump(self.records, f, ensure_ascii=False, indent=1)

    def close(self):
        if self.records is None:
            self.handle.close()


def predict_many(demo, rows, output, batch_size, top_k, unmodulated, generation, progress=True):
    """Predict `rows` (read_inputs) not yet in `output`, batch_size at a time, appending to `output`;
    returns (rows predicted now, rows found done)."""
    from tqdm import tqdm

    from lavis_gated.app.inputs import InputError, read_image_file

    done = read_done(output)
    done_ids = {str(r["id"]) for r in done}
    todo = [r for r in rows if r["id"] not in done_ids]
    writer = PredictionWriter(output, output_columns(top_k, unmodulated), done)
    try:
        with tqdm(total=len(rows), initial=len(rows) - len(todo), unit="input", disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                images = []
                for row in batch:
                    try:
                        images.append(read_image_file(row["image"]))
                    except InputError as err:
                        where = f" (line {row['line']})" if "line" in row else ""
                        raise InputError(f"input {row['id']}{where}: {err}") from None
                predictions = demo.predict_batch(
                    images, [r["question"] for r in batch], top_k=top_k, unmodulated=unmodulated, **generation
                )
                writer.write([output_record(r, p, top_k, unmodulated) for r, p in zip(batch, predictions)])
                bar.update(len(batch))
    finally:
        writer.close()
    return len(todo), len(rows) - len(todo)


def main(argv=None):
    args = parse_args(argv)
    from lavis_gated.app.inputs import InputError, check_question, read_image_file
    from lavis_gated.common.checkpoints import UnsafeCheckpointError

    try:
        if args.image:
            question = check_question(args.question)
            image = read_image_file(args.image)
        else:
            rows = read_inputs(args.input, args.question, args.images)
        checkpoint, _ = checkpoint_files.choose_checkpoint(args.checkpoint)
    except (InputError, checkpoint_files.CheckpointChoiceError, UnsafeCheckpointError, RuntimeError) as err:
        print(f"lavis-gated-predict: {err}", file=sys.stderr)
        return 2
    from lavis_gated.app.inference import DemoModel
    from lavis_gated.common.threads import set_num_threads

    set_num_threads({"num_threads": args.num_threads})
    try:
        demo = DemoModel.load(checkpoint, device=args.device)
    except ValueError as err:  # e.g. --device cuda without a GPU
        print(f"lavis-gated-predict: {err}", file=sys.stderr)
        return 2
    generation = {"num_beams": args.num_beams, "max_length": args.max_len}
    if args.image:
        prediction = demo.predict(
            image, question, top_k=args.top_k, unmodulated=args.unmodulated, **generation
        )
        print(format_json(prediction) if args.json else format_lines(prediction, question is not None))
        return 0
    try:
        predicted, skipped = predict_many(
            demo, rows, args.output, args.batch_size, args.top_k, args.unmodulated, generation
        )
    except (InputError, ValueError) as err:
        print(f"lavis-gated-predict: {err}", file=sys.stderr)
        return 2
    print(
        f"lavis-gated-predict: {predicted} predictions written to {args.output}"
        + (f" ({skipped} found there already: resumed)" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
