"""MMSeg's segmentation visualizer, drawing on images of any memory
layout."""
import numpy as np
from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer


@VISUALIZERS.register_module()
class AnyLayoutSegLocalVisualizer(SegLocalVisualizer):
    """MMSeg's ``SegLocalVisualizer`` for images of any memory layout.

    A difference between the stacks bridged here: MMSeg 1.2.2 draws the
    class names with cv2 onto an array laid out like the image
    (``np.zeros_like``), and for a non-contiguous image, such as the view of
    a permuted tensor that MMSeg's
    ``tools/analysis_tools/browse_dataset.py`` passes, cv2 refuses it
    ("Layout of the output array img is incompatible with cv::Mat", with
    every OpenCV from 4.10 to 5.1; open-mmlab/mmsegmentation#3405). The
    OneDL fork (1.4.2) makes that array contiguous; this class hands a
    contiguous image to either. The project's runtime base
    (``configs/_base_/default_runtime.py``) selects it.
    """

    def _draw_sem_seg(self, image: np.ndarray, *args, **kwargs):
        return super()._draw_sem_seg(
            np.ascontiguousarray(image), *args, **kwargs)
