"""Maps the design-card folders at the repository root into the ``fedledger`` namespace.

Only the mapping lives here; all metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {
    "fedledger": "fedledger",
    "fedledger.chaincode": "chaincode",
    "fedledger.sdk": "sdk",
    "fedledger.network": "network",
    "fedledger.trainer": "trainer",
    "fedledger.anomaly": "anomaly",
}

packages: list[str] = []
for package, folder in ROOTS.items():
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=ROOTS, include_package_data=True)
