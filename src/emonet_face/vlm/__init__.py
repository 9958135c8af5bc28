"""VLM baselines: rate the 40 emotions with any vision-language model behind an OpenAI-compatible
chat-completions endpoint, as one more annotator for ``emonet-face bench hq``."""

from emonet_face.vlm.annotate import AnnotateOptions, RunSummary, annotator_name, run_annotation, write_hq_csv
from emonet_face.vlm.client import ChatClient, RetryPolicy
from emonet_face.vlm.cost import CostEstimate, estimate_cost
from emonet_face.vlm.parse import Annotation, ParseError, extract_json, parse_answer, validate
from emonet_face.vlm.prompts import Prompt, build_prompt

__all__ = [
    "AnnotateOptions",
    "Annotation",
    "ChatClient",
    "CostEstimate",
    "ParseError",
    "Prompt",
    "RetryPolicy",
    "RunSummary",
    "annotator_name",
    "build_prompt",
    "estimate_cost",
    "extract_json",
    "parse_answer",
    "run_annotation",
    "validate",
    "write_hq_csv",
]
