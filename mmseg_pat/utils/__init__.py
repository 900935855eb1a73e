from .checkpoint_compat import (release_checkpoints, trust_checkpoints,
                                trust_during_load, trusted_checkpoints)
from .pat_config import check_pat_applies

__all__ = [
    'check_pat_applies', 'release_checkpoints', 'trust_checkpoints',
    'trust_during_load', 'trusted_checkpoints'
]
