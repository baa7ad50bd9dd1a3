"""The connection and row types that units of work receive from the store, whatever its backend."""

import sqlite3
from typing import TypeAlias

Connection: TypeAlias = sqlite3.Connection
Row: TypeAlias = sqlite3.Row
