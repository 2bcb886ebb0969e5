"""The one error inference raises for bad user input (image, box, phrase), with a message naming the problem.

The CLI prints it and the web demo shows it; anything else escaping the API is a bug or a setup problem
(a missing checkpoint or LLM raises :class:`granvit_mm.core.paths.MissingPathError`).
"""


class InferenceInputError(ValueError):
    """An input the model cannot be asked about: not an image, a bad box, an empty phrase, too many pixels."""
