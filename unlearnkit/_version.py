"""The package's version, apart from the public facade so that internal modules never import `unlearnkit` itself."""

__version__ = "0.1.0"
