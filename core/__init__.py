"""The ground floor: typed config, atomic file I/O and logging set-up. Imports nothing of the project."""
