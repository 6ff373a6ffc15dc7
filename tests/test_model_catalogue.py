"""The model catalogue over HTTP: several models of one task served at once and picked by name,
unknown names answered with the names that are served, and the registry matching the README."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from mmserve.media import encode_png
from mmserve.runners.registry import FAMILIES
from tests.helpers import SPEECH_ZH

README = Path(__file__).parents[1] / "README.md"


def image_part(color: str = "red") -> dict:
    url = "data:image/png;base64," + base64.b64encode(encode_png(Image.new("RGB", (48, 40), color))).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def test_every_registered_family_is_documented_in_the_readme():
    """Each family is named in a row of the README's model table."""
    table_rows = [line for line in README.read_text().splitlines() if line.startswith("|")]
    documented = {name for row in table_rows for name in re.findall(r"`([a-z0-9.-]+)`", row)}
    assert not set(FAMILIES) - documented, f"families missing from README.md: {set(FAMILIES) - documented}"


def test_every_family_declares_a_known_task_and_its_args_name_it():
    for name, family in FAMILIES.items():
        assert name in family.args.model_fields["family"].annotation.__args__, name


def test_models_are_listed_with_their_task_and_family(local_stack):
    data = httpx.get(local_stack + "/v1/models", timeout=30).json()["data"]
    listed = {m["id"]: (m["task"], m["family"]) for m in data}
    assert listed["internvl"] == listed["llava"] == ("vlm", "transformers-vlm")
    assert listed["paraformer"] == ("asr", "funasr-paraformer")
    assert listed["sd3-medium"] == ("image", "diffusers-sd3")


def test_two_vlms_answer_an_image_each_picked_by_name(local_stack):
    client = openai.OpenAI(base_url=local_stack + "/v1", api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in the picture?"}, image_part()]}]
    for name in ("internvl", "llava"):
        reply = client.chat.completions.create(model=name, messages=messages, max_tokens=6)
        assert reply.model == name and isinstance(reply.choices[0].message.content, str)
        assert reply.usage.completion_tokens >= 1
    unnamed = httpx.post(local_stack + "/v1/chat/completions", timeout=120,
                         json={"messages": messages, "max_tokens": 4})
    assert unnamed.status_code == 200 and unnamed.json()["model"] == "internvl"  # the default marked in YAML


def test_an_unknown_model_is_404_listing_the_names_served_for_the_task(local_stack):
    resp = httpx.post(local_stack + "/v1/images/generations", json={"model": "dall-e-3", "prompt": "cat"}, timeout=30)
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["param"] == "model" and "sd3-medium" in error["message"]
    # a served model of another task is just as unknown here
    resp = httpx.post(local_stack + "/v1/audio/speech", json={"model": "llava", "input": "hi"}, timeout=30)
    assert resp.status_code == 404 and "chattts" in resp.json()["error"]["message"]
    resp = httpx.post(local_stack + "/v1/chat/completions", timeout=30,
                      json={"model": "paraformer", "messages": [{"role": "user", "content": "hi"}]})
    message = resp.json()["error"]["message"]
    assert resp.status_code == 404 and "internvl" in message and "llava" in message and "qwen" in message


def test_a_flow_stage_model_is_picked_per_request(local_stack):
    files = [("image", ("a.png", encode_png(Image.new("RGB", (64, 48), "blue")), "image/png"))]
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", files=files, timeout=180,
                      data={"question": "What colour is it?", "vlm_model": "llava"})
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["description"], str)
    resp = httpx.post(local_stack + "/v1/flows/describe-aloud", files=files, timeout=60,
                      data={"vlm_model": "gpt-4o"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["param"] == "vlm_model" and "internvl, llava" in error["message"]


@pytest.mark.parametrize("field", ["asr_model", "llm_model", "image_model"])
def test_speech_to_image_refuses_an_unknown_stage_model(local_stack, field):
    resp = httpx.post(local_stack + "/v1/flows/speech-to-image", timeout=60, data={field: "nope"},
                      files={"file": ("speech.wav", SPEECH_ZH.read_bytes(), "audio/wav")})
    assert resp.status_code == 404 and resp.json()["error"]["param"] == field
