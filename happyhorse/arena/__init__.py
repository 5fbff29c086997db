"""The arena: blind pairwise battles between models' clips, votes, and Bradley-Terry leaderboards.

The two names below live here, not in `store`, so that `happyhorse --help` and every other command
do not import SQLAlchemy (0.2 s) just to describe the arena's options.
"""

DEFAULT_DB = "sqlite:///arena.db"
CATEGORIES = ("t2v-sound", "t2v-silent", "ti2v-sound", "ti2v-silent")
