from .memory_panel import memory_panel
from .seg_visualizer import AnyLayoutSegLocalVisualizer

__all__ = ['AnyLayoutSegLocalVisualizer', 'memory_panel']
