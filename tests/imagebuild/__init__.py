"""Images from the project's Dockerfile without a Docker daemon or a registry (buildah, chroot
isolation, bases built from Debian by debootstrap), written as OCI archives under
~/.cache/geneva-operator/images and imported into a containerd. See build.py."""

from tests.imagebuild.build import Builder, Image, Step, build_all, operator_ref, ray_worker_ref, PAUSE_REF
from tests.imagebuild.importer import Imported, import_all

__all__ = ["Builder", "Image", "Imported", "Step", "build_all", "import_all", "operator_ref", "ray_worker_ref",
           "PAUSE_REF"]
