"""Qt user interface. Import :func:`medviewer.ui.app.run_app` to start the application."""
