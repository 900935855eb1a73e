from .pixel_origins import (ORIGIN_FIELDS, LoadPixelOrigins,
                            PackSegInputsWithOrigins)

__all__ = ['ORIGIN_FIELDS', 'LoadPixelOrigins', 'PackSegInputsWithOrigins']
