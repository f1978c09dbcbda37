"""Benchmarks (`make bench`): each module's ``main()`` prints its figures beside a reference."""
