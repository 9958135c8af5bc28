"""The ``emonet-face`` command. Each sub-command lives in its own module and is registered here;
heavy imports happen inside the commands so that ``--help`` stays instant."""

from __future__ import annotations

import typer

from emonet_face.cli import bench, embed, export, inference, live, plot, serve, stats, train, vlm

app = typer.Typer(
    name="emonet-face",
    help="Fine-grained facial emotion recognition on the EmoNet-Face taxonomy (40 emotions + 4 dimensions).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

inference.register(app)
plot.register(app)
embed.register(app)
export.register(app)
train.register(app)
stats.register(app)
serve.register(app)
live.register(app)
app.add_typer(bench.app, name="bench")
app.add_typer(vlm.app, name="vlm")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
