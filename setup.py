"""Maps the design-card folders at the repository root into the ``fedledger`` namespace.

The map is the symlinks in ``fedledger/`` (``fedledger/sdk -> ../sdk``, ...): static tools (pyright, editors,
import-linter) follow them as plain folders, and this file reads them so that installs use the same map.
Only the mapping lives here; all metadata is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

NAMESPACE = Path("fedledger")
folders = {
    f"fedledger.{link.name}": link.readlink().name
    for link in sorted(NAMESPACE.iterdir())
    if link.is_symlink() and (link / "__init__.py").exists()
}
package_dir = {"fedledger": "fedledger", **folders}
packages = ["fedledger"]
packages += [f"fedledger.{sub}" for sub in find_packages("fedledger", exclude=[n.split(".")[1] + "*" for n in folders])]
for package, folder in folders.items():
    packages += [package, *(f"{package}.{sub}" for sub in find_packages(folder))]

setup(packages=packages, package_dir=package_dir, include_package_data=True)
