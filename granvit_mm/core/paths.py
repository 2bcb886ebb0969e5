"""Missing inputs (checkpoints, the LLM, data) fail early with a message that says what to set or run."""
import os
from typing import Optional


class MissingPathError(FileNotFoundError):
    """A configured input (checkpoint, LLM, data) is missing; the message says what to set or run."""


def check_path(path: Optional[str], what: str, how: str) -> str:
    """Raise MissingPathError naming the config key and the command that produces ``path``."""
    if not path or not os.path.exists(os.path.expanduser(path)):
        raise MissingPathError(f'{what} not found at {path!r}. {how}')
    return os.path.expanduser(path)
