"""Jobs waiting to go out, and the dispatcher that hands them to outputs."""
