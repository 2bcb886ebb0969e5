from .box_text import BOX_STYLES, box_quantum, format_box, parse_box

__all__ = ['BOX_STYLES', 'format_box', 'parse_box', 'box_quantum']
from .geometry import SquareGeometry, pad_to_square, square_resize  # noqa: E402

__all__ += ['SquareGeometry', 'pad_to_square', 'square_resize']
from .data_sample import GranDataSample  # noqa: E402

__all__ += ['GranDataSample']
