"""Stagecraft: database schema migrations for applications on Kubernetes."""

__version__ = "0.1.0"
