from .memory_panel import memory_panel

__all__ = ['memory_panel']
