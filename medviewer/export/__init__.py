"""Exports that combine the readers/writers of ``medviewer.io`` (Qt-free).

``formats`` dispatches by file type and is safe to import anywhere (no VTK);
``meshes`` builds surface files with VTK and is imported only when STL/OBJ is asked for.
"""
