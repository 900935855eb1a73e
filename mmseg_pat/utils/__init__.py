from .model_heads import head_configs, head_modules, unwrap
from .pat_config import check_pat_applies

__all__ = ['check_pat_applies', 'head_configs', 'head_modules', 'unwrap']
