"""The page of lavis-gated-app: Streamlit runs this file (launcher.py passes --checkpoint); the model logic
is in inference.py and input checks in inputs.py, so this file only lays out widgets and results.

Containers carry keys (CSS classes st-key-<key>) that the browser test finds: answer-modulated,
answer-unmodulated, top-styles, heatmap, input-error.
"""

import argparse
import os
import sys

import streamlit as st

from lavis_gated.app import checkpoint_files
from lavis_gated.app.inference import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS, DemoModel
from lavis_gated.app.inputs import (
    MAX_IMAGE_MB,
    MAX_IMAGE_SIDE,
    InputError,
    check_question,
    read_image,
    read_image_file,
)
from lavis_gated.common.checkpoints import UnsafeCheckpointError

NO_DEMO_IMAGE = "(none: use the upload)"
MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|<>$~"


@st.cache_resource(show_spinner="Loading the checkpoint ...")
def load(checkpoint):
    """(checkpoint path, DemoModel, the run's test images), once per server: the images are both the ones
    to pick from and the reference of the deviation heatmap."""
    path, config = checkpoint_files.choose_checkpoint(checkpoint)
    images = checkpoint_files.demo_images(config)
    return path, DemoModel.load(path, reference_images=images), images


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


def show_answers(prediction):
    on, off = st.columns(2)
    with on.container(key="answer-modulated", border=True):
        st.caption("Answer with the K/V modulation (as trained)")
        st.markdown(f"#### {plain(prediction.answer)}")
    with off.container(key="answer-unmodulated", border=True):
        st.caption("Answer with the modulation switched off (same weights: plain BLIP-2 Q-Former)")
        if prediction.answer_unmodulated is None:
            st.markdown("*this checkpoint has no modulation (gating.type none)*")
        else:
            st.markdown(f"#### {plain(prediction.answer_unmodulated)}")


def show_styles(prediction):
    with st.container(key="top-styles", border=True):
        st.markdown(f"**Style head: top {len(prediction.styles)} styles**")
        for rank, (name, probability) in enumerate(prediction.styles, 1):
            st.progress(min(max(probability, 0.0), 1.0), text=f"{rank}. {name}: {probability:.1%}")
        st.caption("The image style head's softmax over the checkpoint's style vocabulary (image only).")


def show_heatmap(demo, prediction):
    with st.container(key="heatmap", border=True):
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


def main():
    parser = argparse.ArgumentParser(prog="lavis-gated-app page")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args(sys.argv[1:])
    st.set_page_config(page_title="lavis-gated: see the modulation", layout="wide")
    st.title("lavis-gated: see the modulation")
    try:
        path, demo, images = load(args.checkpoint)
    except (checkpoint_files.CheckpointChoiceError, UnsafeCheckpointError, OSError, RuntimeError) as err:
        st.error(str(err))
        st.stop()
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    st.caption(
        f"checkpoint `{shown}` · gating: {demo.gating_type or 'none'} · {len(demo.style_names)} styles · "
        f"modulated Q-Former layers {demo.qformer_layers}"
    )
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
        question = right.text_input("Question", placeholder="What style is this painting?", key="question")
        beams, length = right.columns(2)
        num_beams = beams.slider("Beams", 1, 10, DEFAULT_NUM_BEAMS, key="num-beams")
        max_length = length.slider("Max length (new tokens)", 1, 40, DEFAULT_MAX_LENGTH, key="max-length")
        submitted = st.form_submit_button("Answer", type="primary")
    if not submitted:
        st.info("Upload an image or pick a test image, type a question, and press Answer.")
        return
    try:
        image, name = chosen_image(uploaded, picked)
        question = check_question(question)
    except InputError as err:
        with st.container(key="input-error"):
            st.error(str(err))
        return
    with st.spinner("Answering (modulation on, then off) ..."):
        prediction = demo.predict(image, question, num_beams=num_beams, max_length=max_length)
    picture, results = st.columns([1, 4])
    picture.image(image, caption=f"{name}: {question}", width="stretch")
    with results:
        show_answers(prediction)
        styles, heatmap = st.columns([1, 2])
        with styles:
            show_styles(prediction)
        with heatmap:
            show_heatmap(demo, prediction)


main()
