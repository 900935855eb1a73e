from .pixel_origins import (ORIGIN_FIELDS, LoadPixelOrigins,
                            PackSegInputsWithOrigins, add_pixel_origins,
                            carries_pixel_origins)

__all__ = [
    'ORIGIN_FIELDS', 'LoadPixelOrigins', 'PackSegInputsWithOrigins',
    'add_pixel_origins', 'carries_pixel_origins'
]
