"""lavis-gated-predict: one image and question through a checkpoint, for scripts.

    lavis-gated-predict --checkpoint CKPT --image PATH --question "What style is this painting?"
    answer: pop art
    styles: pop art 0.930 | cubism 0.031 | minimalism 0.012

--json prints {"answer", "answer_unmodulated", "styles": [{"style", "probability"}]} instead. Bad input (no
such image, not an image, an empty question, no or an unsafe checkpoint) is a one-line message on stderr and
exit status 2.
"""

import argparse
import json
import sys

from lavis_gated.app import checkpoint_files
from lavis_gated.app.inference import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS, DemoModel
from lavis_gated.app.inputs import InputError, check_question, read_image_file
from lavis_gated.common.checkpoints import UnsafeCheckpointError

TOP_K = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="lavis-gated-predict",
        description="Answer one question about one image with a lavis-gated checkpoint; prints the answer "
        f"and the style head's top {TOP_K} styles.",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help=f"a checkpoint written by lavis-gated's runner (default: the newest "
        f"{checkpoint_files.DEFAULT_PATTERN})",
    )
    parser.add_argument("--image", required=True, metavar="PATH", help="an image file (PNG, JPEG, ...)")
    parser.add_argument("--question", required=True, help="the question about the image")
    parser.add_argument(
        "--num-beams", type=int, default=DEFAULT_NUM_BEAMS, help="beam search width (default %(default)s)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help="most new tokens of the answer (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of two lines")
    args = parser.parse_args(argv)
    if args.num_beams < 1 or args.max_length < 1:
        parser.error("--num-beams and --max-length must be at least 1")
    return args


def format_lines(prediction):
    styles = " | ".join(f"{name} {probability:.3f}" for name, probability in prediction.styles)
    return f"answer: {prediction.answer}\nstyles: {styles}"


def format_json(prediction):
    return json.dumps(
        {
            "answer": prediction.answer,
            "answer_unmodulated": prediction.answer_unmodulated,
            "styles": [{"style": name, "probability": p} for name, p in prediction.styles],
        }
    )


def main(argv=None):
    args = parse_args(argv)
    try:
        question = check_question(args.question)
        image = read_image_file(args.image)
        checkpoint, _ = checkpoint_files.choose_checkpoint(args.checkpoint)
    except (InputError, checkpoint_files.CheckpointChoiceError, UnsafeCheckpointError, RuntimeError) as err:
        print(f"lavis-gated-predict: {err}", file=sys.stderr)
        return 2
    demo = DemoModel.load(checkpoint)
    prediction = demo.predict(image, question, args.num_beams, args.max_length, top_k=TOP_K)
    print(format_json(prediction) if args.json else format_lines(prediction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
