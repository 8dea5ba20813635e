"""Task types. See plugins.base for the contract and plugins.registry for loading."""
