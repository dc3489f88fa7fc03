"""Settings of the bridge process in the SQLite database-outage test: MChat's own settings with a
1 s busy timeout instead of 20 s, so a locked database answers 500 within the test's bounds.
(With the default, each request would wait 20 s for the lock before its 500.)"""

from mchat.settings import *

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {**DATABASES["default"]["OPTIONS"], "timeout": 1}
