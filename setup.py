"""Installs the top-level plugins/ folder as bridge.plugins (metadata lives in pyproject.toml)."""

from setuptools import find_packages, setup

# Adapters live in the repo's top-level plugins/ folder but install as
# bridge.plugins.*, so site-packages never gains a top-level "plugins" package.
setup(
    package_dir={"bridge": "bridge", "bridge.plugins": "plugins"},
    packages=[
        *find_packages(include=["bridge", "bridge.*"]),
        "bridge.plugins",
        *(f"bridge.plugins.{name}" for name in find_packages(where="plugins")),
    ],
)
