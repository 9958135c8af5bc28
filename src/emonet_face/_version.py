"""The package version: one definition, read by the package, the server, bundle manifests and the build."""

__version__ = "0.2.0"
