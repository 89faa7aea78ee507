"""geneva-operator: declarative LanceDB column backfills on KubeRay."""
__version__ = "0.1.0"
