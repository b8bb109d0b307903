"""Maps the design card's top-level folders to subpackages of the one import package `ncd`.

The folders circuits/, compiler/, ops/, widgets/ and gallery/ sit at the top of the repository
(docs/design.md) but install as ncd.circuits, ncd.compiler, ...; the list is computed so that a new
op family folder needs no edit here.
"""

from setuptools import find_packages, setup

SUBPACKAGES = ["circuits", "compiler", "ops", "widgets", "gallery"]

packages = ["ncd"]
package_dir = {"ncd": "ncd"}
for sub in SUBPACKAGES:
    packages.append(f"ncd.{sub}")
    package_dir[f"ncd.{sub}"] = sub
    packages += [f"ncd.{sub}.{p}" for p in find_packages(sub)]

setup(packages=packages, package_dir=package_dir)
