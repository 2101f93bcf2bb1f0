"""The page of lavis-gated-app: Streamlit runs this file (launcher.py passes --checkpoint, once or twice,
and --device); the model logic is in inference.py and input checks in inputs.py, so this file only lays out
widgets and results.

Containers carry keys (CSS classes st-key-<key>) that the browser test finds: reference, input-error and,
per checkpoint (the second one's keys end in -2): answer-modulated, answer-unmodulated, answer-swapped,
top-styles, heatmap.
"""

import argparse
import os
import sys

import streamlit as st

from lavis_gated.app import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS, checkpoint_files
from lavis_gated.app.inference import SWAP_IMAGES_PER_STYLE, DemoModel
from lavis_gated.app.inputs import (
    MAX_IMAGE_MB,
    MAX_IMAGE_SIDE,
    InputError,
    check_question,
    read_image,
    read_image_file,
)
from lavis_gated.common.checkpoints import UnsafeCheckpointError
from lavis_gated.common.threads import set_num_threads

NO_DEMO_IMAGE = "(none: use the upload)"
NO_SWAP = "(no swap)"
MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|<>$~"


@st.cache_resource(show_spinner="Loading the checkpoint ...")
def load(checkpoint, device=None):
    """(checkpoint path, DemoModel, the run's test images, their references), once per server: the images
    are the ones to pick from and the reference of the deviation heatmap; each train style's images give
    its mean feature for the style swap."""
    path, config = checkpoint_files.choose_checkpoint(checkpoint)
    images = checkpoint_files.demo_images(config)
    references = checkpoint_files.image_references(checkpoint_files.split_rows(config, "test"))
    train = checkpoint_files.split_rows(config, "train", limit_per_style=SWAP_IMAGES_PER_STYLE)
    swap_images = {style: list(dict.fromkeys(group.image_path)) for style, group in train.groupby("style")}
    demo = DemoModel.load(path, reference_images=images, swap_images=swap_images, device=device)
    return path, demo, images, references


def shown_path(path):
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def plain(text):
    """text shown literally in markdown (a generated answer may hold markdown characters)."""
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIAL else c for c in text) or "*(empty answer)*"


def chosen_image(uploaded, picked):
    """(RGB image, its name): the upload if any, else the picked demo image; InputError otherwise."""
    if uploaded is not None:
        return read_image(uploaded.getvalue(), uploaded.name), uploaded.name
    if picked and picked != NO_DEMO_IMAGE:
        return read_image_file(picked), os.path.basename(picked)
    return read_image(None), None


def show_reference(references, picked, question):
    """The picked test image's style label and reference answers (the one to this question first)."""
    reference = references.get(picked)
    if reference is None:
        return
    with st.container(key="reference", border=True):
        st.markdown(f"**Test image {plain(os.path.basename(picked))}**")
        st.markdown(f"style label: **{plain(reference['style']) if reference['style'] else '(none)'}**")
        answers = sorted(reference["answers"], key=lambda qa: qa[0].strip().lower() != question.lower())
        for asked, answer in answers:
            st.markdown(f"reference answer to *{plain(asked)}*: **{plain(answer)}**")


def show_answers(prediction, swapped, keys):
    on, off, swap = st.columns(3)
    with on.container(key=keys("answer-modulated"), border=True):
        st.caption("Answer with the K/V modulation (as trained)")
        st.markdown(f"#### {plain(prediction.answer)}")
    with off.container(key=keys("answer-unmodulated"), border=True):
        st.caption("Answer with the modulation switched off (same weights: plain BLIP-2 Q-Former)")
        if prediction.answer_unmodulated is not None:
            st.markdown(f"#### {plain(prediction.answer_unmodulated)}")
        elif prediction.strength is None:
            st.markdown("*this checkpoint has no modulation (gating.type none)*")
        else:
            st.markdown("*not asked (tick 'Also answer with the modulation off')*")
    with swap.container(key=keys("answer-swapped"), border=True):
        if swapped is None:
            st.caption("Style swap")
            st.markdown("*pick a style to swap in*")
        else:
            st.caption(
                f"Answer when the control tokens come from **{plain(swapped.style)}** (its mean style-CNN "
                f"feature over {swapped.image_count} train images) instead of this image's"
            )
            st.markdown(f"#### {plain(swapped.answer)}")


def show_styles(prediction, keys):
    with st.container(key=keys("top-styles"), border=True):
        st.markdown(f"**Style head: top {len(prediction.styles)} styles**")
        for rank, (name, probability) in enumerate(prediction.styles, 1):
            st.progress(min(max(probability, 0.0), 1.0), text=f"{rank}. {name}: {probability:.1%}")
        st.caption("The image style head's softmax over the checkpoint's style vocabulary (image only).")


def show_heatmap(demo, prediction, keys):
    with st.container(key=keys("heatmap"), border=True):
        st.markdown("**Modulation strength per Q-Former cross-attention layer x head (this input)**")
        figure = demo.modulation_figure(prediction)
        if figure is None:
            st.info("This checkpoint has no K/V modulation (gating.type none): nothing to draw.")
            return
        st.pyplot(figure)
        absolute = "the absolute strength (|gamma|, |beta| or |tanh g|, mean over each head's channels)"
        if prediction.reference is None:
            st.caption(f"No test images of the run found to compare with, so only {absolute} is shown.")
        else:
            st.caption(
                f"Top: this input minus the mean over the run's {prediction.reference_count} test images "
                "asked the same question (the strength depends on the question more than on the image): "
                "red heads are moved more for this image than for the average one, blue less. "
                f"Bottom: {absolute}."
            )


def show_checkpoint(path, demo, prediction, swapped, keys):
    st.markdown(
        f"**`{shown_path(path)}`** · gating: {demo.gating_type or 'none'} · {len(demo.style_names)} styles"
    )
    show_answers(prediction, swapped, keys)
    styles, heatmap = st.columns([1, 2])
    with styles:
        show_styles(prediction, keys)
    with heatmap:
        show_heatmap(demo, prediction, keys)


def main():
    parser = argparse.ArgumentParser(prog="lavis-gated-app page")
    parser.add_argument("--checkpoint", action="append", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--num-threads", type=int, default=None)
    args = parser.parse_args(sys.argv[1:])
    if args.num_threads:
        set_num_threads({"num_threads": args.num_threads})
    st.set_page_config(page_title="lavis-gated: see the modulation", layout="wide")
    st.title("lavis-gated: see the modulation")
    try:
        loaded = [load(checkpoint, args.device) for checkpoint in args.checkpoint or [None]]
    except (
        checkpoint_files.CheckpointChoiceError,
        UnsafeCheckpointError,
        OSError,
        RuntimeError,
        ValueError,
    ) as err:
        st.error(str(err))
        st.stop()
    _, first, images, references = loaded[0]
    st.caption(
        " | ".join(
            f"checkpoint `{shown_path(path)}` · gating: {demo.gating_type or 'none'} · "
            f"{len(demo.style_names)} styles · modulated Q-Former layers {demo.qformer_layers} · "
            f"{demo.device}"
            for path, demo, _, _ in loaded
        )
    )
    swap_styles = list(dict.fromkeys(s for _, demo, _, _ in loaded for s in demo.swap_styles))
    with st.form("ask"):
        left, right = st.columns(2)
        uploaded = left.file_uploader(
            f"Upload an image (up to {MAX_IMAGE_MB} MB, {MAX_IMAGE_SIDE} px a side)",
            max_upload_size=MAX_IMAGE_MB,
            key="upload",
        )
        picked = left.selectbox(
            "... or pick one of the run's test images" if images else "(no demo test images found)",
            [NO_DEMO_IMAGE, *images],
            format_func=lambda p: p if p == NO_DEMO_IMAGE else os.path.basename(p),
            key="demo-image",
        )
        question = right.text_input(
            "Question (blank: caption the image)", placeholder="What style is this painting?", key="question"
        )
        beams, length = right.columns(2)
        num_beams = beams.slider("Beams", 1, 10, DEFAULT_NUM_BEAMS, key="num-beams")
        max_length = length.slider("Max length (new tokens)", 1, 40, DEFAULT_MAX_LENGTH, key="max-length")
        unmodulated = right.checkbox(
            "Also answer with the modulation off (a second generation)", value=True, key="unmodulated"
        )
        swap_style = right.selectbox(
            "Style swap: also answer with the control tokens of this style's train images"
            if swap_styles
            else "Style swap (no labelled train images of the run found)",
            [NO_SWAP, *swap_styles],
            key="swap-style",
        )
        submitted = st.form_submit_button("Answer", type="primary")
    if not submitted:
        st.info(
            "Upload an image or pick a test image, type a question (or none: a caption), and press Answer."
        )
        return
    try:
        image, name = chosen_image(uploaded, picked)
        question = check_question(question)
    except InputError as err:
        with st.container(key="input-error"):
            st.error(str(err))
        return
    generation = {"num_beams": num_beams, "max_length": max_length}
    results = []
    with st.spinner("Answering ..."):
        for path, demo, _, _ in loaded:
            prediction = demo.predict(image, question, unmodulated=unmodulated, **generation)
            swapped = None
            if swap_style != NO_SWAP and swap_style in demo.swap_styles:
                swapped = demo.predict_swapped(image, question, swap_style, **generation)
            results.append((path, demo, prediction, swapped))
    picture, answers = st.columns([1, 4])
    picture.image(image, caption=f"{name}: {question or '(caption)'}", width="stretch")
    if uploaded is None:
        with picture:
            show_reference(references, picked, question)
    with answers:
        columns = st.columns(len(results)) if len(results) > 1 else [st.container()]
        for index, (column, result) in enumerate(zip(columns, results)):
            with column:
                show_checkpoint(*result, keys=lambda key, i=index: key if i == 0 else f"{key}-{i + 1}")


main()
