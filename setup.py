"""Package list for setuptools; everything else is in pyproject.toml.

The top-level ``plugins/`` and ``resources/`` folders are not Python packages, but a wheel
install must carry them: they are installed as ``medviewer_bundled_plugins`` and
``medviewer_resources`` (found by ``medviewer.ai.registry.bundled_plugins_dir`` and
``medviewer.resource_path``). Source-tree and editable installs use the folders in place.
"""

from setuptools import find_packages, setup

BUNDLED_FOLDERS = {"medviewer_bundled_plugins": "plugins", "medviewer_resources": "resources"}

setup(
    packages=[*find_packages(include=["medviewer", "medviewer.*"]), *BUNDLED_FOLDERS],
    package_dir=BUNDLED_FOLDERS,
    package_data={
        "medviewer": ["py.typed"],
        "medviewer_bundled_plugins": ["README.md", "*/*.py", "*/*.toml", "*/*.md", "*/*.json"],
        "medviewer_resources": ["*.svg", "*.png", "*.ico", "*.icns", "*.md"],
    },
    exclude_package_data={"": ["__pycache__/*"]},
)
