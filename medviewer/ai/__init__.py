"""AI engine: model plugin API, backend worker and bundled models (arrives with the AI issue).

Core modules here stay free of Qt and VTK so models run headless in the CLI and tests.
"""
