"""UCF-Crime class vocabulary shared by the synthetic dataset, converters and trainers."""

CLASS_NAMES: tuple[str, ...] = (
    'Normal',
    'Abuse',
    'Arrest',
    'Arson',
    'Assault',
    'Burglary',
    'Explosion',
    'Fighting',
    'RoadAccidents',
    'Robbery',
    'Shooting',
    'Shoplifting',
    'Stealing',
    'Vandalism',
)
NUM_CLASSES: int = len(CLASS_NAMES)
NORMAL: int = 0

# Anomaly classes whose synthetic signature is purely a motion pattern: every single frame
# inside the anomaly window is statistically like a normal frame (same people, sizes, colours).
MOTION_ONLY_CLASSES: tuple[str, ...] = ('Abuse', 'Assault', 'Fighting', 'Robbery')

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

assert NUM_CLASSES == 14
