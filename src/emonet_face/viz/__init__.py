"""Pictures of the results (matplotlib, Agg backend)."""

from emonet_face.viz.charts import FAMILY_COLOURS, FaceScores, face_bar_chart, image_overview, timeline_chart
from emonet_face.viz.pictures import PictureWriter, face_scores

__all__ = [
    "FAMILY_COLOURS",
    "FaceScores",
    "PictureWriter",
    "face_bar_chart",
    "face_scores",
    "image_overview",
    "timeline_chart",
]
