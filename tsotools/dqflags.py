"""Data-quality bits, with the values of ``stdatamodels.jwst.datamodels.dqflags``.

PIXELDQ and DQ are uint32; GROUPDQ is uint8 and uses only the bits up to 128.
"""

__all__ = [
    "AD_FLOOR",
    "BAD_GROUP",
    "CHARGELOSS",
    "DEAD",
    "DO_NOT_USE",
    "DROPOUT",
    "HOT",
    "JUMP_DET",
    "NON_SCIENCE",
    "OUTLIER",
    "PERSISTENCE",
    "REFERENCE_PIXEL",
    "SATURATED",
    "TELEGRAPH",
    "WARM",
]

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
DROPOUT = 8
OUTLIER = 16
PERSISTENCE = 32
AD_FLOOR = 64
CHARGELOSS = 128
NON_SCIENCE = 512
DEAD = 2**10
HOT = 2**11
WARM = 2**12
TELEGRAPH = 2**15
REFERENCE_PIXEL = 2**31

#: GROUPDQ bits that keep a group out of jump detection, ramp fits and 1/f estimates.
BAD_GROUP = DO_NOT_USE | SATURATED
