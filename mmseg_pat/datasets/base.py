"""What the project's dataset classes share."""
from typing import Any


class NameFilesInLoadErrorsMixin:
    """Mixin for a :class:`BaseSegDataset`: an error in loading a sample
    names the sample's files.

    Pillow, which MMSeg's ``LoadAnnotations`` uses, reports a damaged file
    as e.g. "image file is truncated", without its name. Put the mixin before
    :class:`BaseSegDataset` in the bases.
    """

    def prepare_data(self, idx: int) -> Any:
        """The sample ``idx`` through the pipeline.

        Raises:
            OSError: If loading fails (with the type Pillow raised; it
                raises SyntaxError for a damaged PNG chunk), with the
                sample's ``img_path`` and ``seg_map_path``.
        """
        try:
            return super().prepare_data(idx)
        except (OSError, SyntaxError) as err:
            info = self.get_data_info(idx)
            raise type(err)(
                f'{err} (sample {idx} of {type(self).__name__}: img_path='
                f'{info.get("img_path")!r}, seg_map_path='
                f'{info.get("seg_map_path")!r}); if one of them is damaged, '
                'convert or download it again') from err
