# MMSeg's runtime, with its visualizer drawing on images of any memory
# layout (AnyLayoutSegLocalVisualizer: MMSeg 1.2.2's own refuses the images
# that its tools/analysis_tools/browse_dataset.py passes).
_base_ = ['mmseg::_base_/default_runtime.py']
visualizer = dict(type='AnyLayoutSegLocalVisualizer')
