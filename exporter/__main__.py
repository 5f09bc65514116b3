"""``python -m exporter``."""

from exporter.main import main

main()
