"""Production mode: the N+1 detector and the query capture on a sample of requests, what they
find stored where every process and host adds to it (see :mod:`.store`)."""
