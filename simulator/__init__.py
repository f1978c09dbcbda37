"""The simulator: synthetic gunfire, confounders and noise over a virtual sensor array."""
