"""The durable store: SQLite behind one writer thread, its schema, and small ledgers."""
