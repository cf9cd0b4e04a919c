"""Maps the design-card folders at the repository root into the ``fedledger`` namespace.

Only the mapping lives here; all metadata is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOTS = {
    "fedledger": "fedledger",
    "fedledger.chaincode": "chaincode",
    "fedledger.sdk": "sdk",
    "fedledger.network": "network",
    "fedledger.trainer": "trainer",
    "fedledger.anomaly": "anomaly",
}

present = {package: folder for package, folder in ROOTS.items() if Path(folder, "__init__.py").exists()}
packages: list[str] = []
for package, folder in present.items():
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=present, include_package_data=True)
